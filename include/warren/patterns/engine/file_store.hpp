#pragma once
/// @file patterns/engine/file_store.hpp
/// file_store: a workflow_store that keeps one text file per instance in a directory,
/// written atomically (a temporary file, then a rename), and the text format it writes
/// (format_instance / parse_instance).

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../../error.hpp"
#include "data.hpp"
#include "instance.hpp"
#include "store.hpp"

namespace warren {

namespace detail {

inline void add_record(std::string& out, std::initializer_list<std::string_view> fields) {
    bool first = true;
    for (const std::string_view f : fields) {
        if (!first) out += '\t';
        first = false;
        out += escape_field(f);
    }
    out += '\n';
}

[[nodiscard]] inline std::string time_text(std::optional<clock::time_point> t) {
    return t ? std::to_string(t->time_since_epoch().count()) : std::string("-");
}

/// Reads the records of one instance file, reporting each problem with its line.
class instance_reader {
public:
    instance_reader(std::string_view text, std::string_view source) : text_(text), source_(source) {}

    workflow_instance read() {
        workflow_instance w;
        bool header = false;
        bool ended = false;
        bool has_id = false;
        while (next_line()) {
            if (ended) fail("text after 'end'");
            const std::string& kind = fields_[0];
            if (!header) {
                if (kind != "warren-workflow-instance") fail("not a warren workflow instance file (no header)");
                expect(2);
                if (fields_[1] != "1") fail("unknown format version " + detail::quoted(fields_[1]));
                header = true;
            } else if (kind == "end") {
                expect(1);
                ended = true;
            } else if (kind == "id") {
                w.id = single();
                has_id = !w.id.empty();
            } else if (kind == "workflow") {
                w.workflow = single();
            } else if (kind == "version") {
                expect(2);
                w.version = static_cast<std::uint32_t>(number(fields_[1], 0xffffffffULL));
            } else if (kind == "status") {
                w.status = workflow_state(single());
            } else if (kind == "ending") {
                w.ending = workflow_state(single());
            } else if (kind == "error") {
                w.error = single();
            } else if (kind == "failed_step") {
                w.failed_step = single();
            } else if (kind == "started_at") {
                expect(2);
                w.started_at = required_time(fields_[1]);
            } else if (kind == "ended_at") {
                expect(2);
                w.ended_at = time(fields_[1]);
            } else if (kind == "deadline") {
                expect(2);
                w.deadline = time(fields_[1]);
            } else if (kind == "alerted") {
                expect(2);
                w.alerted = flag(fields_[1]);
            } else if (kind == "failure_instance") {
                w.failure_instance = single();
            } else if (kind == "compensation_next") {
                expect(2);
                w.compensation_next = static_cast<std::size_t>(number(fields_[1], 0xffffffffULL));
            } else if (kind == "compensation") {
                w.compensation_plan.push_back(single());
            } else if (kind == "input" || kind == "data") {
                expect(3);
                (kind == "input" ? w.input : w.data).insert_or_assign(fields_[1], fields_[2]);
            } else if (kind == "step") {
                w.steps.push_back(step());
            } else if (kind == "output") {
                expect(4);
                step_state* s = nullptr;
                for (auto& candidate : w.steps) {
                    if (candidate.name == fields_[1]) s = &candidate;
                }
                if (s == nullptr) fail("output of step " + detail::quoted(fields_[1]) + " before its 'step' record");
                s->output.insert_or_assign(fields_[2], fields_[3]);
            } else if (kind == "history") {
                w.history.push_back(history());
            } else {
                fail("unknown record " + detail::quoted(kind));
            }
        }
        if (!header) fail("empty file");
        if (!has_id) fail("no 'id' record");
        if (!ended) fail("no 'end' record (the file was cut short)");
        if (w.compensation_next > w.compensation_plan.size()) fail("compensation_next beyond the compensation plan");
        return w;
    }

private:
    bool next_line() {
        while (!text_.empty()) {
            ++line_;
            const std::size_t end = text_.find('\n');
            std::string_view row = text_.substr(0, end);
            text_ = end == std::string_view::npos ? std::string_view{} : text_.substr(end + 1);
            if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
            if (row.empty()) continue;
            fields_.clear();
            std::string field{};
            std::size_t start = 0;
            while (true) {
                const std::size_t tab = row.find('\t', start);
                if (!unescape_field(row.substr(start, tab == std::string_view::npos ? row.size() - start : tab - start),
                                    field)) {
                    fail("bad escape in " + detail::quoted(row));
                }
                fields_.push_back(field);
                if (tab == std::string_view::npos) break;
                start = tab + 1;
            }
            return true;
        }
        return false;
    }

    [[noreturn]] void fail(const std::string& what) const {
        raise(reply_code::syntax_error,
              "workflow store file " + detail::quoted(source_) + " line " + std::to_string(line_) + ": " + what);
    }
    void expect(std::size_t n) const {
        if (fields_.size() != n) {
            fail("record " + detail::quoted(fields_[0]) + " needs " + std::to_string(n) + " fields, has " +
                 std::to_string(fields_.size()));
        }
    }
    const std::string& single() const {
        expect(2);
        return fields_[1];
    }
    std::uint64_t number(std::string_view text, std::uint64_t max) const {
        std::uint64_t n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc{} || end != text.data() + text.size() || n > max) fail("not a number: " + detail::quoted(text));
        return n;
    }
    std::optional<clock::time_point> time(std::string_view text) const {
        if (text == "-") return std::nullopt;
        return required_time(text);
    }
    clock::time_point required_time(std::string_view text) const {
        clock::duration::rep n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc{} || end != text.data() + text.size()) fail("not a time: " + detail::quoted(text));
        return clock::time_point(clock::duration(n));
    }
    bool flag(std::string_view text) const {
        if (text != "0" && text != "1") fail("not 0 or 1: " + detail::quoted(text));
        return text == "1";
    }
    workflow_status workflow_state(std::string_view text) const {
        const auto s = enum_from_name<workflow_status>(workflow_status_names, text);
        if (!s) fail("unknown workflow status " + detail::quoted(text));
        return *s;
    }
    step_state step() const {
        expect(13);
        step_state s;
        s.name = fields_[1];
        const auto status = enum_from_name<step_status>(step_status_names, fields_[2]);
        if (!status) fail("unknown step status " + detail::quoted(fields_[2]));
        s.status = *status;
        s.attempt = static_cast<std::uint32_t>(number(fields_[3], 0xffffffffULL));
        s.task_id = fields_[4];
        s.started_at = required_time(fields_[5]);
        s.ended_at = time(fields_[6]);
        s.deadline = time(fields_[7]);
        s.retry_at = time(fields_[8]);
        s.alerted = flag(fields_[9]);
        s.branch = fields_[10];
        s.error = fields_[11];
        s.completion_order = number(fields_[12], ~std::uint64_t{0});
        return s;
    }
    history_entry history() const {
        expect(6);
        history_entry h;
        h.step = fields_[1];
        h.attempt = static_cast<std::uint32_t>(number(fields_[2], 0xffffffffULL));
        const auto event = enum_from_name<history_event>(history_event_names, fields_[3]);
        if (!event) fail("unknown history event " + detail::quoted(fields_[3]));
        h.event = *event;
        h.at = required_time(fields_[4]);
        h.detail = fields_[5];
        return h;
    }

    std::string_view text_;
    std::string_view source_;
    std::size_t line_ = 0;
    std::vector<std::string> fields_{};
};

} // namespace detail

/// The text form of `instance` that file_store writes: a header line
/// `warren-workflow-instance<TAB>1`, then one record per line, fields separated by tabs
/// and escaped (`\\`, `\t`, `\n`, `\r`): `id`, `workflow`, `version`, `status`, ...,
/// `input`/`data` (key, value), `step` (13 fields), `output` (step, key, value),
/// `history` (step, attempt, event, time, detail), and a closing `end`. Times are
/// nanoseconds on the broker's clock, `-` for none. Thread-safe (a pure function).
[[nodiscard]] inline std::string format_instance(const workflow_instance& w) {
    std::string out{};
    detail::add_record(out, {"warren-workflow-instance", "1"});
    detail::add_record(out, {"id", w.id});
    detail::add_record(out, {"workflow", w.workflow});
    detail::add_record(out, {"version", std::to_string(w.version)});
    detail::add_record(out, {"status", to_string(w.status)});
    detail::add_record(out, {"ending", to_string(w.ending)});
    detail::add_record(out, {"error", w.error});
    detail::add_record(out, {"failed_step", w.failed_step});
    detail::add_record(out, {"started_at", detail::time_text(w.started_at)});
    detail::add_record(out, {"ended_at", detail::time_text(w.ended_at)});
    detail::add_record(out, {"deadline", detail::time_text(w.deadline)});
    detail::add_record(out, {"alerted", w.alerted ? "1" : "0"});
    detail::add_record(out, {"failure_instance", w.failure_instance});
    for (const auto& name : w.compensation_plan) detail::add_record(out, {"compensation", name});
    detail::add_record(out, {"compensation_next", std::to_string(w.compensation_next)});
    for (const auto& [k, v] : w.input) detail::add_record(out, {"input", k, v});
    for (const auto& [k, v] : w.data) detail::add_record(out, {"data", k, v});
    for (const auto& s : w.steps) {
        detail::add_record(out, {"step", s.name, to_string(s.status), std::to_string(s.attempt), s.task_id,
                                 detail::time_text(s.started_at), detail::time_text(s.ended_at),
                                 detail::time_text(s.deadline), detail::time_text(s.retry_at), s.alerted ? "1" : "0",
                                 s.branch, s.error, std::to_string(s.completion_order)});
        for (const auto& [k, v] : s.output) detail::add_record(out, {"output", s.name, k, v});
    }
    for (const auto& h : w.history) {
        detail::add_record(out, {"history", h.step, std::to_string(h.attempt), to_string(h.event),
                                 detail::time_text(h.at), h.detail});
    }
    detail::add_record(out, {"end"});
    return out;
}

/// Parses what format_instance wrote. Anything else (no header, an unknown record or
/// status, a record with too few or too many fields, a bad number or escape, no `end`: a
/// file cut short) is syntax_error (502) naming `source` and the line:
/// `SYNTAX_ERROR - workflow store file 'x.wf' line 7: unknown step status 'lost'`.
/// Thread-safe (a pure function).
[[nodiscard]] inline workflow_instance parse_instance(std::string_view text, std::string_view source = "<text>") {
    return detail::instance_reader(text, source).read();
}

/// A workflow_store in a directory: one file `<id>.wf` per instance in the text format of
/// format_instance, replaced atomically on each save (written to `<id>.wf.tmp`, then
/// renamed over the old file), so a process that stops at any point leaves either the old
/// or the new state, never half of one. (Nothing is fsync'd: a power cut may lose the last
/// saves, not tear a file.) A leftover `.tmp` is ignored. An engine made over a file_store
/// that holds running instances resumes them (process_engine::resume()).
/// @code
/// warren::file_store store(std::filesystem::temp_directory_path() / "orders");
/// warren::process_engine engine(broker, store);
/// engine.register_workflow(order_flow);
/// engine.resume(); // re-publishes the tasks that were in flight when the last run stopped
/// @endcode
/// Instance ids must be file names: letters, digits, `.`, `_`, `-`, not starting with
/// `.` (the engine's are); others are precondition_failed.
/// Thread safety: every member is thread-safe (one mutex); one store per directory.
class file_store final : public workflow_store {
public:
    /// Uses `directory`, creating it if needed (resource_error if it cannot).
    explicit file_store(std::filesystem::path directory) : directory_(std::move(directory)) {
        std::error_code ec;
        std::filesystem::create_directories(directory_, ec);
        if (ec || !std::filesystem::is_directory(directory_)) {
            detail::raise(reply_code::resource_error,
                          "cannot use workflow store directory " + detail::quoted(directory_.string()));
        }
    }

    /// Writes `instance` to `<id>.wf` atomically. A file that cannot be written is
    /// resource_error. Thread-safe.
    void save(const workflow_instance& instance) override {
        check_id(instance.id);
        const std::string text = format_instance(instance);
        const std::scoped_lock lock(mutex_);
        const std::filesystem::path final_path = path_of(instance.id);
        std::filesystem::path temporary = final_path;
        temporary += ".tmp";
        {
            std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
            out.write(text.data(), static_cast<std::streamsize>(text.size()));
            out.flush();
            if (!out) {
                detail::raise(reply_code::resource_error,
                              "cannot write workflow store file " + detail::quoted(temporary.string()));
            }
        }
        std::error_code ec;
        std::filesystem::rename(temporary, final_path, ec); // atomic on POSIX: readers see old or new
        if (ec) {
            detail::raise(reply_code::resource_error,
                          "cannot rename to workflow store file " + detail::quoted(final_path.string()));
        }
    }

    /// Every instance in the directory (its `.wf` files). A file that does not parse is
    /// syntax_error naming it and the line (see parse_instance); one whose id is not its
    /// file name is syntax_error too. Thread-safe.
    [[nodiscard]] std::vector<workflow_instance> load_all() override {
        const std::scoped_lock lock(mutex_);
        std::vector<workflow_instance> all{};
        for (const auto& entry : std::filesystem::directory_iterator(directory_)) {
            if (!entry.is_regular_file() || entry.path().extension() != ".wf") continue;
            all.push_back(read(entry.path()));
        }
        return all;
    }

    /// The instance saved under `id`, if any (errors as for load_all). Thread-safe.
    [[nodiscard]] std::optional<workflow_instance> find(std::string_view id) const {
        check_id(id);
        const std::scoped_lock lock(mutex_);
        const std::filesystem::path p = path_of(id);
        if (!std::filesystem::exists(p)) return std::nullopt;
        return read(p);
    }

    /// The file that holds instance `id`. Thread-safe.
    [[nodiscard]] std::filesystem::path path_of(std::string_view id) const {
        return directory_ / (std::string(id) + ".wf");
    }
    /// The directory. Thread-safe.
    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return directory_; }

private:
    static void check_id(std::string_view id) {
        bool ok = !id.empty() && id.front() != '.';
        for (const char c : id) {
            ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-');
        }
        if (!ok) detail::raise(reply_code::precondition_failed, "instance id " + detail::quoted(id) + " is not a file name");
    }

    static workflow_instance read(const std::filesystem::path& p) {
        std::ifstream in(p, std::ios::binary);
        if (!in) detail::raise(reply_code::resource_error, "cannot read workflow store file " + detail::quoted(p.string()));
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        workflow_instance w = parse_instance(text, p.string());
        if (w.id + ".wf" != p.filename().string()) {
            detail::raise(reply_code::syntax_error, "workflow store file " + detail::quoted(p.string()) +
                                                        " holds instance " + detail::quoted(w.id));
        }
        return w;
    }

    std::filesystem::path directory_;
    mutable std::mutex mutex_;
};

} // namespace warren
