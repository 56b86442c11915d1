#pragma once
/// @file patterns/engine/data.hpp
/// workflow_data: the string-to-string map a workflow instance carries, and its text form
/// (one `key<TAB>value` line per entry), which task messages and the file store use.

#include <map>
#include <string>
#include <string_view>

#include "../../error.hpp"

namespace warren {

/// What a workflow instance carries from step to step: its input, then each task's output
/// merged in. Strings only, so that it goes into a message body and a file unchanged.
using workflow_data = std::map<std::string, std::string, std::less<>>;

namespace detail {

/// `text` with backslash, tab, newline and carriage return escaped (`\\`, `\t`, `\n`,
/// `\r`), so that it fits in one tab-separated field.
[[nodiscard]] inline std::string escape_field(std::string_view text) {
    std::string out{};
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        default: out += c;
        }
    }
    return out;
}

/// The inverse of escape_field; false (and `out` unspecified) for a dangling or unknown
/// escape.
[[nodiscard]] inline bool unescape_field(std::string_view text, std::string& out) {
    out.clear();
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out += text[i];
            continue;
        }
        if (++i == text.size()) return false;
        switch (text[i]) {
        case '\\': out += '\\'; break;
        case 't': out += '\t'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        default: return false;
        }
    }
    return true;
}

} // namespace detail

/// The text form of `data`: one `key<TAB>value` line per entry, in key order, each field
/// escaped (see decode_data). Thread-safe (a pure function).
[[nodiscard]] inline std::string encode_data(const workflow_data& data) {
    std::string out{};
    for (const auto& [key, value] : data) {
        out += detail::escape_field(key);
        out += '\t';
        out += detail::escape_field(value);
        out += '\n';
    }
    return out;
}

/// Parses what encode_data wrote. A line without a tab or with a bad escape is
/// syntax_error (502) naming the line; empty lines are skipped; a key given twice keeps
/// its last value. Thread-safe (a pure function).
[[nodiscard]] inline workflow_data decode_data(std::string_view text) {
    workflow_data data{};
    std::size_t line = 0;
    std::string key{};
    std::string value{};
    while (!text.empty()) {
        ++line;
        const std::size_t end = text.find('\n');
        const std::string_view row = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        if (row.empty()) continue;
        const std::size_t tab = row.find('\t');
        if (tab == std::string_view::npos || row.find('\t', tab + 1) != std::string_view::npos ||
            !detail::unescape_field(row.substr(0, tab), key) || !detail::unescape_field(row.substr(tab + 1), value)) {
            detail::raise(reply_code::syntax_error,
                          "workflow data line " + std::to_string(line) + " is not 'key<TAB>value': " +
                              detail::quoted(row));
        }
        data.insert_or_assign(key, value);
    }
    return data;
}

} // namespace warren
