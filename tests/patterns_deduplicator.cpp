// basic_deduplicator (include/warren/patterns/deduplicator.hpp): the claim states, complete
// and abandon, forgetting the oldest handled id past the capacity and any past the
// retention (on a manual_clock), the empty id, and records made stale by abandon.

#include <chrono>
#include <string>

#include <warren/clock.hpp>
#include <warren/patterns/deduplicator.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

TEMPLATE_TEST_CASE("deduplicator: an id is first, then in progress, then a duplicate once completed",
                   "[patterns][deduplicator]", warren::deduplicator, warren::concurrent_deduplicator) {
    TestType seen;
    CHECK_FALSE(seen.contains("m-1"));
    CHECK(seen.try_begin("m-1") == warren::claim::first);
    CHECK(seen.contains("m-1"));
    CHECK(seen.try_begin("m-1") == warren::claim::in_progress);
    seen.complete("m-1");
    CHECK(seen.try_begin("m-1") == warren::claim::duplicate);
    CHECK(seen.try_begin("m-1") == warren::claim::duplicate);
    CHECK(seen.try_begin("m-2") == warren::claim::first); // ids are independent
    CHECK(seen.size() == 2);
}

TEST_CASE("deduplicator: abandon gives the id up, so the next try_begin is first again",
          "[patterns][deduplicator]") {
    warren::deduplicator seen;
    SECTION("an id in progress") {
        REQUIRE(seen.try_begin("m") == warren::claim::first);
        seen.abandon("m");
        CHECK_FALSE(seen.contains("m"));
        CHECK(seen.try_begin("m") == warren::claim::first);
    }
    SECTION("a handled id") {
        REQUIRE(seen.try_begin("m") == warren::claim::first);
        seen.complete("m");
        seen.abandon("m");
        CHECK(seen.try_begin("m") == warren::claim::first);
        seen.complete("m");
        CHECK(seen.try_begin("m") == warren::claim::duplicate);
    }
    SECTION("an id never seen") {
        seen.abandon("never");
        CHECK(seen.size() == 0);
    }
}

TEST_CASE("deduplicator: complete records an id that was never claimed", "[patterns][deduplicator]") {
    warren::deduplicator seen;
    seen.complete("m");
    CHECK(seen.try_begin("m") == warren::claim::duplicate);
    seen.complete("m"); // twice: still one record
    CHECK(seen.size() == 1);
}

TEST_CASE("deduplicator: an empty id is never remembered", "[patterns][deduplicator]") {
    warren::deduplicator seen;
    CHECK(seen.try_begin("") == warren::claim::first);
    CHECK(seen.try_begin("") == warren::claim::first);
    seen.complete("");
    CHECK(seen.try_begin("") == warren::claim::first);
    CHECK_FALSE(seen.contains(""));
    CHECK(seen.size() == 0);
}

TEST_CASE("deduplicator: past the capacity the oldest handled id is forgotten first", "[patterns][deduplicator]") {
    warren::deduplicator seen({.capacity = 2});
    for (const char* id : {"a", "b", "c"}) {
        REQUIRE(seen.try_begin(id) == warren::claim::first);
        seen.complete(id);
    }
    CHECK(seen.size() == 2);
    CHECK_FALSE(seen.contains("a"));
    CHECK(seen.try_begin("b") == warren::claim::duplicate);
    CHECK(seen.try_begin("c") == warren::claim::duplicate);
    CHECK(seen.try_begin("a") == warren::claim::first); // forgotten: handled again
}

TEST_CASE("deduplicator: ids in progress do not count against the capacity and are never forgotten",
          "[patterns][deduplicator]") {
    warren::deduplicator seen({.capacity = 1});
    REQUIRE(seen.try_begin("busy") == warren::claim::first);
    for (const char* id : {"a", "b", "c"}) {
        REQUIRE(seen.try_begin(id) == warren::claim::first);
        seen.complete(id);
    }
    CHECK(seen.try_begin("busy") == warren::claim::in_progress);
    CHECK(seen.try_begin("c") == warren::claim::duplicate);
    CHECK(seen.size() == 2); // busy and c
}

TEST_CASE("deduplicator: capacity 0 is no limit", "[patterns][deduplicator]") {
    warren::deduplicator seen({.capacity = 0});
    for (int i = 0; i < 1000; ++i) seen.complete(std::to_string(i));
    CHECK(seen.size() == 1000);
    CHECK(seen.try_begin("0") == warren::claim::duplicate);
}

TEST_CASE("deduplicator: a handled id is forgotten once its retention has passed on the clock",
          "[patterns][deduplicator]") {
    warren::manual_clock time;
    warren::deduplicator seen({.capacity = 0, .retention = 10s}, time);
    seen.complete("early");
    time.advance(4s);
    seen.complete("late");
    time.advance(5s); // early is 9 s old
    CHECK(seen.try_begin("early") == warren::claim::duplicate);
    time.advance(1s); // early is 10 s old: forgotten; late is 6 s old
    CHECK(seen.try_begin("early") == warren::claim::first);
    CHECK(seen.try_begin("late") == warren::claim::duplicate);
    time.advance(4s);
    CHECK(seen.try_begin("late") == warren::claim::first);
}

TEST_CASE("deduplicator: retention does not forget an id in progress", "[patterns][deduplicator]") {
    warren::manual_clock time;
    warren::deduplicator seen({.retention = 1s}, time);
    REQUIRE(seen.try_begin("busy") == warren::claim::first);
    time.advance(1h);
    CHECK(seen.try_begin("busy") == warren::claim::in_progress);
    seen.complete("busy"); // its retention starts now
    time.advance(999ms);
    CHECK(seen.try_begin("busy") == warren::claim::duplicate);
    time.advance(1ms);
    CHECK(seen.try_begin("busy") == warren::claim::first);
}

TEST_CASE("deduplicator: a record made stale by abandon does not forget the id handled again later",
          "[patterns][deduplicator]") {
    SECTION("by capacity") {
        warren::deduplicator seen({.capacity = 2});
        seen.complete("x");  // record 1 of x
        seen.abandon("x");   // record 1 is stale now
        seen.complete("x");  // record 2 of x, the current one
        seen.complete("y");  // three records over a capacity of 2: the stale one goes
        CHECK(seen.try_begin("x") == warren::claim::duplicate);
        CHECK(seen.try_begin("y") == warren::claim::duplicate);
        seen.complete("z"); // now x's current record is the oldest
        CHECK(seen.try_begin("x") == warren::claim::first);
        CHECK(seen.try_begin("y") == warren::claim::duplicate);
    }
    SECTION("by retention") {
        warren::manual_clock time;
        warren::deduplicator seen({.capacity = 0, .retention = 10s}, time);
        seen.complete("x");
        seen.abandon("x");
        time.advance(5s);
        seen.complete("x"); // handled again at 5 s: kept until 15 s, whatever the record of 0 s says
        time.advance(6s);
        CHECK(seen.try_begin("x") == warren::claim::duplicate);
        time.advance(4s);
        CHECK(seen.try_begin("x") == warren::claim::first);
    }
    SECTION("a stale record does not forget an id in progress") {
        warren::deduplicator seen({.capacity = 1});
        seen.complete("x");
        seen.abandon("x");
        REQUIRE(seen.try_begin("x") == warren::claim::first); // in progress now
        seen.complete("y"); // pushes out x's stale record
        CHECK(seen.try_begin("x") == warren::claim::in_progress);
    }
}
