// libFuzzer target: warren::topic_matcher against the obviously correct reference matcher
// of tests/support/reference_topic.hpp. See docs/fuzzing.md for how to build and run it.
//
// The first input byte picks a mode:
//   even: "text" mode. The rest is split on '\n' into up to 16 strings of arbitrary bytes;
//         each is bound as a pattern and routed as a key, so words such as "a#", "**" or
//         "#" used literally in a key get explored.
//   odd:  "ops" mode. The rest is a program of bind / unbind / route operations over a
//         small alphabet of words, so bindings collide, counts go up and down, and the
//         same keys are routed again after the topology changed. Also: routes made from
//         inside another route's callback, cache resizing (and off), copy and move,
//         unbinding everything, and floods of distinct keys that make the cache step
//         aside (keys repeat, so admission on a second miss is exercised throughout).
// Every operation runs on two matchers, one with the routing cache off and one with it on
// (when topic_matcher has set_cache_capacity), and both are checked against a model:
// insert/erase results, size(), and the exact values each route reports.
// A mismatch prints what differed and aborts, which libFuzzer records as a crash.
// Set WARREN_FUZZ_TRACE=1 to print every operation while replaying an input.

#include <warren/topic_matcher.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/reference_topic.hpp"

namespace {

using matcher = warren::topic_matcher<int>;

// The cache arrives with the faster engine; the fuzzer must build before and after.
template <class M>
concept has_cache = requires(M& m, std::size_t n) { m.set_cache_capacity(n); };

// A template, so the discarded branch is not checked when the member is missing.
template <class M>
void set_cache(M& m, std::size_t entries) {
    if constexpr (has_cache<M>) m.set_cache_capacity(entries);
    else (void)m, (void)entries;
}

// ---------------------------------------------------------------------------
// What the matcher counts as one pattern, and how many reports a match gives.
// Both are probed once at start-up, because the documented contract allows two readings
// of each and the engine is allowed to pick either: the checks below are then exact for
// the reading the engine chose (and a mix of the two is caught).
// ---------------------------------------------------------------------------
struct contract {
    // true: "#.*" and "*.#" are one pattern (every run of '*' and '#' with a '#' in it is
    // stored as its '*'s followed by one '#'); false: only runs of '#' are collapsed.
    bool full_normalisation = false;
    // true: match() reports each value once per key; false: once per matching pattern.
    bool dedup_values = false;
};

contract probe() {
    contract c;
    {
        matcher m;
        m.insert("#.*", 1);
        c.full_normalisation = !m.insert("*.#", 1);
    }
    {
        matcher m;
        m.insert("a", 1);
        m.insert("*", 1);
        int reports = 0;
        m.match("a", [&reports](int) { ++reports; });
        c.dedup_values = reports == 1;
    }
    return c;
}

const contract& the_contract() {
    static const contract c = probe();
    return c;
}

bool tracing() {
    static const bool on = [] {
        const char* env = std::getenv("WARREN_FUZZ_TRACE");
        return env != nullptr && *env != '\0' && *env != '0';
    }();
    return on;
}

std::string quoted(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '\'' || c == '\\') {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else {
            out += c;
        }
    }
    return out + "'";
}

/// `pattern` in the form the matcher stores it under (see contract::full_normalisation).
std::string canonical(std::string_view pattern) {
    if (!the_contract().full_normalisation) return warren_test::collapse_hash_runs(pattern);
    return warren_test::normalise_wildcard_runs(pattern);
}

// ---------------------------------------------------------------------------
// The model: (canonical pattern, value) -> count, and the text first bound under it.
// ---------------------------------------------------------------------------
struct binding {
    std::string original; // the reference matches this text, not the canonical one
    int count = 0;
};
using model = std::map<std::pair<std::string, int>, binding>;

[[noreturn]] void fail(const std::string& what, const model& bindings) {
    std::fprintf(stderr, "\ntopic_matcher_fuzz: MISMATCH: %s\n", what.c_str());
    std::fprintf(stderr, "contract: %s normalisation, values reported %s\n",
                 the_contract().full_normalisation ? "full" : "'#'-runs-only",
                 the_contract().dedup_values ? "once per key" : "once per pattern");
    std::fprintf(stderr, "bindings (%zu pairs):\n", bindings.size());
    for (const auto& [k, b] : bindings) {
        std::fprintf(stderr, "  %s (bound as %s) -> %d x%d\n", quoted(k.first).c_str(),
                     quoted(b.original).c_str(), k.second, b.count);
    }
    std::abort();
}

std::string show(const std::vector<int>& values) {
    std::string s = "{";
    for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + std::to_string(values[i]);
    return s + "}";
}

/// What match(key) must report, sorted.
std::vector<int> expected_route(const model& bindings, std::string_view key) {
    std::vector<int> out;
    for (const auto& [k, b] : bindings) {
        if (warren_test::reference_topic_match(b.original, key)) out.push_back(k.second);
    }
    std::sort(out.begin(), out.end());
    if (the_contract().dedup_values) out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::vector<int> route(const matcher& m, std::string_view key) {
    std::vector<int> got;
    m.match(key, [&got](int v) { got.push_back(v); });
    std::sort(got.begin(), got.end());
    return got;
}

constexpr std::string_view key_words_for_flood[] = {"a", "b", "c", "", "d", "e", "#", "*"};

// ---------------------------------------------------------------------------
// Two matchers driven in lock step with the model.
// ---------------------------------------------------------------------------
class harness {
public:
    explicit harness(std::size_t cache_entries) { set_cache(cached_, cache_entries); }

    void bind(std::string_view pattern, int value) {
        if (tracing()) std::fprintf(stderr, "bind %s %d\n", quoted(pattern).c_str(), value);
        const auto k = std::make_pair(canonical(pattern), value);
        binding& b = bindings_[k];
        if (b.count == 0) b.original = std::string(pattern);
        const bool fresh = b.count == 0;
        ++b.count;
        check_bool("insert", pattern, value, plain_.insert(pattern, value), fresh, "cache off");
        check_bool("insert", pattern, value, cached_.insert(pattern, value), fresh, "cache on");
        check_size();
    }

    void unbind(std::string_view pattern, int value) {
        if (tracing()) std::fprintf(stderr, "unbind %s %d\n", quoted(pattern).c_str(), value);
        const auto it = bindings_.find({canonical(pattern), value});
        const bool present = it != bindings_.end();
        if (present && --it->second.count == 0) bindings_.erase(it);
        check_bool("erase", pattern, value, plain_.erase(pattern, value), present, "cache off");
        check_bool("erase", pattern, value, cached_.erase(pattern, value), present, "cache on");
        check_size();
    }

    void route_and_check(std::string_view key) {
        if (tracing()) std::fprintf(stderr, "route %s\n", quoted(key).c_str());
        const std::vector<int> want = expected_route(bindings_, key);
        check_route(key, route(plain_, key), want, "cache off");
        check_route(key, route(cached_, key), want, "cache on");
    }

    /// Routes `outer` on the cached matcher and, from inside each of its reports, one of
    /// `inner` in turn: a nested match must neither see nor disturb the outer one, nor the
    /// cache entry the outer one is filling or reading.
    void nested_route(std::string_view outer, const std::vector<std::string>& inner) {
        if (tracing()) {
            std::fprintf(stderr, "nested %s in", quoted(outer).c_str());
            for (const std::string& k : inner) std::fprintf(stderr, " %s", quoted(k).c_str());
            std::fprintf(stderr, "\n");
        }
        std::vector<int> got_outer;
        std::vector<std::vector<int>> got_inner;
        cached_.match(outer, [&](int v) {
            got_outer.push_back(v);
            const std::string& key = inner[got_inner.size() % inner.size()];
            std::vector<int>& got = got_inner.emplace_back();
            cached_.match(key, [&got](int w) { got.push_back(w); });
        });
        std::sort(got_outer.begin(), got_outer.end());
        check_route(outer, got_outer, expected_route(bindings_, outer), "cache on, outer of a nested match");
        for (std::size_t i = 0; i < got_inner.size(); ++i) {
            const std::string& key = inner[i % inner.size()];
            std::sort(got_inner[i].begin(), got_inner[i].end());
            check_route(key, got_inner[i], expected_route(bindings_, key), "cache on, nested match");
        }
    }

    void set_cache_capacity(std::size_t entries) {
        if (tracing()) std::fprintf(stderr, "cache %zu\n", entries);
        set_cache(cached_, entries);
    }

    /// Replaces the cached matcher by a copy of itself (then by a move of that copy):
    /// tables and cache must survive both.
    void copy_and_move() {
        if (tracing()) std::fprintf(stderr, "copy and move\n");
        if constexpr (std::copyable<matcher>) {
            matcher copy = cached_;
            cached_ = matcher{};
            cached_ = std::move(copy);
            check_size();
        }
    }

    /// Routes `routes` keys made from `seed` on both matchers and compares them with each
    /// other (the cache-off one is checked against the model elsewhere; the model would be
    /// too slow here). Over a thousand mostly distinct keys drive the cache's hit rate down
    /// until it steps aside, so the routes after a flood take the bypass path.
    void flood(std::size_t routes, std::uint8_t seed) {
        if (tracing()) std::fprintf(stderr, "flood %zu from %u\n", routes, unsigned{seed});
        std::string key;
        for (std::size_t n = 0; n < routes; ++n) {
            key.clear();
            // Base-8 digits of n, each a word of the key alphabet; the seed shifts them.
            for (std::size_t x = n * 7 + seed; ; x /= 8) {
                if (!key.empty()) key += '.';
                key += key_words_for_flood[x % 8];
                if (x < 8) break;
            }
            const std::vector<int> want = route(plain_, key);
            check_route(key, route(cached_, key), want, "cache on, during a flood of distinct keys");
        }
    }

    /// Erases every remaining count of every pair; afterwards nothing matches.
    void unbind_all() {
        if (tracing()) std::fprintf(stderr, "unbind all\n");
        const model left = bindings_;
        for (const auto& [k, b] : left) {
            for (int i = 0; i < b.count; ++i) unbind(b.original, k.second);
        }
        if (!plain_.empty() || !cached_.empty()) fail("matcher not empty after erasing every pair", bindings_);
    }

    [[nodiscard]] const model& bindings() const noexcept { return bindings_; }

private:
    void check_bool(const char* op, std::string_view pattern, int value, bool got, bool want,
                    const char* which) const {
        if (got == want) return;
        fail(std::string(op) + "(" + quoted(pattern) + ", " + std::to_string(value) + ") returned " +
                 (got ? "true" : "false") + ", expected " + (want ? "true" : "false") + " (" + which + ")",
             bindings_);
    }

    void check_size() const {
        for (const matcher* m : {&plain_, &cached_}) {
            if (m->size() != bindings_.size() || m->empty() != bindings_.empty()) {
                fail("size() is " + std::to_string(m->size()) + ", expected " + std::to_string(bindings_.size()) +
                         (m == &plain_ ? " (cache off)" : " (cache on)"),
                     bindings_);
            }
        }
    }

    void check_route(std::string_view key, const std::vector<int>& got, const std::vector<int>& want,
                     const char* which) const {
        if (got == want) return;
        fail("match(" + quoted(key) + ") reported " + show(got) + ", expected " + show(want) + " (" + which + ")",
             bindings_);
    }

    matcher plain_;
    matcher cached_;
    model bindings_;
};

// ---------------------------------------------------------------------------
// Text mode.
// ---------------------------------------------------------------------------
void run_text(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t max_strings = 16;
    std::vector<std::string_view> strings;
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    for (std::size_t start = 0; start <= all.size() && strings.size() < max_strings;) {
        const std::size_t nl = std::min(all.find('\n', start), all.size());
        // 255 bytes is the longest key AMQP carries; it also bounds the reference's table.
        strings.push_back(all.substr(start, std::min<std::size_t>(nl - start, warren::max_name_length)));
        start = nl + 1;
    }

    // The canonical form must mean what the original means, or the model is wrong.
    for (std::string_view p : strings) {
        const std::string c = canonical(p);
        for (std::string_view k : strings) {
            if (warren_test::reference_topic_match(p, k) != warren_test::reference_topic_match(c, k)) {
                fail("fuzzer's canonical form " + quoted(c) + " of " + quoted(p) + " disagrees on key " + quoted(k),
                     {});
            }
        }
    }

    // A small cache, so distinct keys evict each other.
    harness h(4);
    for (std::size_t i = 0; i < strings.size(); ++i) h.bind(strings[i], static_cast<int>(i % 5));
    for (int pass = 0; pass < 2; ++pass) { // the second pass hits the cache
        for (std::string_view k : strings) h.route_and_check(k);
    }
    for (std::size_t i = 0; i < strings.size(); i += 2) h.unbind(strings[i], static_cast<int>(i % 5));
    for (std::string_view k : strings) h.route_and_check(k);
    h.unbind_all();
    for (std::string_view k : strings) h.route_and_check(k);
}

// ---------------------------------------------------------------------------
// Ops mode.
// ---------------------------------------------------------------------------
class reader {
public:
    reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    [[nodiscard]] bool done() const noexcept { return pos_ >= size_; }
    /// The next byte; 0 once the input is used up.
    std::uint8_t next() noexcept { return pos_ < size_ ? data_[pos_++] : std::uint8_t{0}; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

// Few words, so patterns collide and match often; the empty word is a word.
constexpr std::string_view pattern_words[] = {"a", "b", "c", "", "*", "#", "*", "#"};
constexpr std::string_view key_words[] = {"a", "b", "c", "", "a", "b", "#", "*"};

/// A pattern or key: an earlier one again when the byte's top bit is set (so keys repeat
/// and hit the cache, patterns are unbound after being bound), else up to 7 new words.
std::string decode(reader& in, const std::string_view (&alphabet)[8], std::vector<std::string>& pool) {
    const std::uint8_t b = in.next();
    if ((b & 0x80) != 0 && !pool.empty()) return pool[b % pool.size()];
    std::string s;
    const std::size_t words = b % 8;
    for (std::size_t i = 0; i < words; ++i) {
        if (i > 0) s += '.';
        s += alphabet[in.next() % 8];
    }
    if (pool.size() < 32) pool.push_back(s);
    else pool[b % pool.size()] = s;
    return s;
}

void run_ops(const std::uint8_t* data, std::size_t size) {
    reader in(data, size);
    // 1 to 16 entries: small enough that keys collide and evict each other.
    harness h(1U + in.next() % 16U);
    std::vector<std::string> patterns;
    std::vector<std::string> keys;
    constexpr std::size_t max_ops = 512; // keeps one input's run short
    for (std::size_t op = 0; op < max_ops && !in.done(); ++op) {
        switch (in.next() % 12) {
        case 0:
        case 1:
        case 2: {
            const std::string p = decode(in, pattern_words, patterns);
            h.bind(p, in.next() % 4);
            break;
        }
        case 3:
        case 4: {
            const std::string p = decode(in, pattern_words, patterns);
            h.unbind(p, in.next() % 4);
            break;
        }
        case 5:
        case 6:
        case 7:
        case 8:
            h.route_and_check(decode(in, key_words, keys));
            break;
        case 9: {
            const std::string outer = decode(in, key_words, keys);
            std::vector<std::string> inner{decode(in, key_words, keys)};
            inner.push_back(decode(in, key_words, keys));
            h.nested_route(outer, inner);
            break;
        }
        case 10: {
            // 0 turns the cache off, then 1 to 64 entries.
            const std::uint8_t b = in.next() % 8;
            h.set_cache_capacity(b == 0 ? 0 : std::size_t{1} << (b - 1));
            break;
        }
        default: {
            const std::uint8_t b = in.next();
            if (b % 4 == 0) h.unbind_all();
            else if (b % 4 == 3) h.flood(1100 + b, b);
            else h.copy_and_move();
            break;
        }
        }
    }
    // Whatever the program did, every key it used must route right at the end.
    for (const std::string& k : keys) h.route_and_check(k);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    const contract& c = the_contract();
    std::fprintf(stderr, "topic_matcher_fuzz: %s normalisation, values reported %s, routing cache %s\n",
                 c.full_normalisation ? "full ('#.*' is '*.#')" : "'#'-runs-only",
                 c.dedup_values ? "once per key" : "once per pattern",
                 has_cache<matcher> ? "exercised" : "not available (set_cache_capacity missing)");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    if ((data[0] & 1) == 0) run_text(data + 1, size - 1);
    else run_ops(data + 1, size - 1);
    return 0;
}
