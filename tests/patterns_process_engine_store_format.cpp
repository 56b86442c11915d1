// file_store's text format (format_instance / parse_instance) and workflow_data's:
// round trips, and a clear warren::error naming the file and line for a corrupt file.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"
#include "support/process_engine.hpp"

using namespace std::chrono_literals;
using warren_test::at;
using warren_test::error_of;

namespace {

/// A fresh, empty directory under the system's temporary directory, removed at the end.
struct scratch_dir {
    std::filesystem::path path;
    scratch_dir() {
        static int n = 0;
        path = std::filesystem::temp_directory_path() /
               ("warren_process_engine_format_" + std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "_" +
                std::to_string(++n));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    /// Writes `text` to file `name` in it.
    void write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name, std::ios::binary) << text;
    }
};

warren::workflow_instance sample() {
    warren::workflow_instance w;
    w.id = "wf-12";
    w.workflow = "order\tflow";
    w.version = 4;
    w.status = warren::workflow_status::compensating;
    w.ending = warren::workflow_status::timed_out;
    w.input = {{"k\n", "v\\"}, {"empty", ""}};
    w.data = {{"k\n", "v\\"}, {"paid", "yes"}};
    w.error = "step 'x' timed out\r\n";
    w.failed_step = "x";
    w.started_at = at(5ms);
    w.deadline = at(30s);
    w.alerted = true;
    w.compensation_plan = {"b", "a"};
    w.compensation_next = 1;
    w.failure_instance = "wf-13";
    w.steps.push_back({.name = "a", .status = warren::step_status::compensating, .attempt = 2,
                       .task_id = "wf-12.a.undo.2", .started_at = at(5ms), .ended_at = at(7ms), .deadline = at(9s),
                       .retry_at = at(8s), .alerted = false, .branch = "", .output = {{"o", "1"}},
                       .error = "e", .completion_order = 1});
    w.steps.push_back({.name = "d", .status = warren::step_status::completed, .started_at = at(6ms),
                       .ended_at = at(6ms), .branch = "express"});
    w.history.push_back({"", 0, warren::history_event::workflow_started, at(5ms), "version 4"});
    w.history.push_back({"a", 2, warren::history_event::retry_scheduled, at(7ms), "after 1ms"});
    return w;
}

} // namespace

TEST_CASE("file_store format: an instance survives format_instance and parse_instance unchanged, escapes included",
          "[process_engine][store][format]") {
    const auto w = sample();
    CHECK(warren::parse_instance(warren::format_instance(w)) == w);
    const warren::workflow_instance plain{.id = "wf-1", .workflow = "w"};
    CHECK(warren::parse_instance(warren::format_instance(plain)) == plain);
}

TEST_CASE("file_store format: a file store writes one file per instance and loads it back", "[process_engine][store][format]") {
    scratch_dir dir;
    warren::file_store store(dir.path);
    store.save(sample());
    CHECK(std::filesystem::exists(dir.path / "wf-12.wf"));
    CHECK(!std::filesystem::exists(dir.path / "wf-12.wf.tmp")); // renamed into place
    auto again = sample();
    again.status = warren::workflow_status::failed;
    store.save(again); // replaces
    const auto all = store.load_all();
    REQUIRE(all.size() == 1);
    CHECK(all[0] == again);
    CHECK(store.find("wf-12") == again);
    CHECK(!store.find("wf-99"));
}

TEST_CASE("file_store format: a leftover temporary file (a crash mid-write) is ignored", "[process_engine][store][format]") {
    scratch_dir dir;
    warren::file_store store(dir.path);
    store.save(sample());
    dir.write("wf-12.wf.tmp", "warren-workflow-instance\t1\nid\twf-12\n"); // cut short
    const auto all = store.load_all();
    REQUIRE(all.size() == 1);
    CHECK(all[0] == sample());
}

TEST_CASE("file_store format: an id that is not a file name is refused", "[process_engine][store][format]") {
    scratch_dir dir;
    warren::file_store store(dir.path);
    warren::workflow_instance w{.id = "../escape", .workflow = "w"};
    CHECK_THROWS_WITH(store.save(w), "PRECONDITION_FAILED - instance id '../escape' is not a file name");
    w.id = "";
    CHECK_THROWS_AS(store.save(w), warren::error);
}

TEST_CASE("file_store format: a corrupt file is syntax_error naming the file, the line and the problem",
          "[process_engine][store][format]") {
    const std::string good = warren::format_instance(sample());
    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string text = good;
        const auto pos = text.find(from);
        REQUIRE(pos != std::string::npos);
        text.replace(pos, from.size(), to);
        return text;
    };
    auto problem = [](const std::string& text) {
        try {
            (void)warren::parse_instance(text, "x.wf");
        } catch (const warren::error& e) {
            CHECK(e.code() == warren::reply_code::syntax_error);
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(problem("") == "SYNTAX_ERROR - workflow store file 'x.wf' line 0: empty file");
    CHECK(problem("hello\n") == "SYNTAX_ERROR - workflow store file 'x.wf' line 1: not a warren workflow instance file (no header)");
    CHECK(problem(replaced("warren-workflow-instance\t1", "warren-workflow-instance\t7")) ==
          "SYNTAX_ERROR - workflow store file 'x.wf' line 1: unknown format version '7'");
    CHECK(problem(replaced("status\tcompensating", "status\tlost")) ==
          "SYNTAX_ERROR - workflow store file 'x.wf' line 5: unknown workflow status 'lost'");
    CHECK_CONTAINS(problem(replaced("version\t4", "version\tfour")), "line 4: not a number: 'four'");
    CHECK_CONTAINS(problem(replaced("version\t4", "version\t4\textra")), "line 4: record 'version' needs 2 fields, has 3");
    CHECK_CONTAINS(problem(replaced("\tcompensating\t2\t", "\tbogus\t2\t")), "unknown step status 'bogus'");
    CHECK_CONTAINS(problem(replaced("retry_scheduled", "exploded")), "unknown history event 'exploded'");
    CHECK_CONTAINS(problem(replaced("started_at\t5000000", "started_at\t-")), "not a time: '-'");
    CHECK_CONTAINS(problem(replaced("alerted\t1", "alerted\tyes")), "not 0 or 1: 'yes'");
    CHECK_CONTAINS(problem(replaced("error\tstep", "error\\q\tstep")), "bad escape");
    CHECK_CONTAINS(problem(replaced("failed_step\tx", "mystery\tx")), "unknown record 'mystery'");
    CHECK_CONTAINS(problem(replaced("output\ta\to\t1", "output\tzz\to\t1")), "output of step 'zz' before its 'step' record");
    CHECK_CONTAINS(problem(replaced("compensation_next\t1", "compensation_next\t3")), "compensation_next beyond");
    CHECK_CONTAINS(problem(good.substr(0, good.size() - 4)), "no 'end' record (the file was cut short)");
    CHECK_CONTAINS(problem(good + "id\tagain\n"), "text after 'end'");
    CHECK_CONTAINS(problem(replaced("id\twf-12", "id\t")), "no 'id' record");
}

TEST_CASE("file_store format: a corrupt file makes load_all throw naming it, as does a file holding another id",
          "[process_engine][store][format]") {
    scratch_dir dir;
    warren::file_store store(dir.path);
    dir.write("wf-1.wf", "warren-workflow-instance\t1\nid\twf-1\nstatus\tsideways\nend\n");
    CHECK_CONTAINS(error_of([&] { (void)store.load_all(); }), "wf-1.wf' line 3: unknown workflow status 'sideways'");
    std::filesystem::remove(dir.path / "wf-1.wf");
    dir.write("wf-2.wf", warren::format_instance(sample()));
    CHECK_CONTAINS(error_of([&] { (void)store.load_all(); }), "wf-2.wf' holds instance 'wf-12'");
    // An engine over it refuses to start rather than lose the instance.
    warren::broker b;
    CHECK_THROWS_AS(warren::process_engine<warren::broker>(b, store), warren::error);
}

TEST_CASE("workflow_data: encode_data and decode_data round-trip any text, and a malformed line is syntax_error",
          "[process_engine][data]") {
    const warren::workflow_data data{{"a\tb", "c\nd"}, {"back\\slash", "\r"}, {"", "empty key"}};
    CHECK(warren::decode_data(warren::encode_data(data)) == data);
    CHECK(warren::decode_data("").empty());
    CHECK_THROWS_WITH(warren::decode_data("k\tv\nno tab here\n"),
                      "SYNTAX_ERROR - workflow data line 2 is not 'key<TAB>value': 'no tab here'");
    CHECK_THROWS_AS(warren::decode_data("k\tv\\x\n"), warren::error);
    CHECK_THROWS_AS(warren::decode_data("k\tv\tw\n"), warren::error);
}
