// Clocks: manual_clock (time that moves only when told to), steady_clock (the default), and
// a broker reading time from whichever clock it was given.

#include <warren/broker.hpp>
#include <warren/clock.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

/// A clock a test sets directly, to show that a broker reads the clock it was given and
/// nothing else.
class set_clock final : public warren::clock {
public:
    time_point at{};
    std::int64_t wall = 0;
    [[nodiscard]] time_point now() const noexcept override { return at; }
    [[nodiscard]] std::int64_t unix_seconds() const noexcept override { return wall; }
};

} // namespace

TEST_CASE("clock: manual_clock starts at time zero", "[clock]") {
    const warren::manual_clock time;
    CHECK(time.elapsed() == 0ns);
    CHECK(time.now().time_since_epoch() == 0ns);
    CHECK(time.unix_seconds() == 0);
}

TEST_CASE("clock: manual_clock moves by exactly the step it is given", "[clock]") {
    warren::manual_clock time;
    time.advance(5ms);
    CHECK(time.elapsed() == 5ms);
    CHECK(time.now().time_since_epoch() == 5ms);
    time.advance(1ns);
    CHECK(time.elapsed() == 5'000'001ns);
    time.advance(2h);
    CHECK(time.now().time_since_epoch() == 2h + 5ms + 1ns);
    // Reading does not move it.
    CHECK(time.now() == time.now());
    CHECK(time.elapsed() == 2h + 5ms + 1ns);
}

TEST_CASE("clock: manual_clock never goes back: negative and zero steps are ignored", "[clock]") {
    warren::manual_clock time;
    time.advance(10ms);
    time.advance(-3ms);
    CHECK(time.elapsed() == 10ms);
    time.advance(0ns);
    CHECK(time.elapsed() == 10ms);
    time.advance(-1ns);
    CHECK(time.now().time_since_epoch() == 10ms);
    time.advance(1ms);
    CHECK(time.elapsed() == 11ms);
}

TEST_CASE("clock: manual_clock counts unix_seconds in whole seconds from unix_start", "[clock]") {
    warren::manual_clock time(1'700'000'000);
    CHECK(time.unix_seconds() == 1'700'000'000);
    CHECK(time.elapsed() == 0ns); // unix_start moves the wall clock only
    time.advance(999ms);
    CHECK(time.unix_seconds() == 1'700'000'000); // not a whole second yet
    time.advance(1ms);
    CHECK(time.unix_seconds() == 1'700'000'001);
    time.advance(1h);
    CHECK(time.unix_seconds() == 1'700'003'601);
}

TEST_CASE("clock: manual_clock works through the clock interface", "[clock]") {
    warren::manual_clock manual(42);
    const warren::clock& time = manual;
    manual.advance(2500ms);
    CHECK(time.now().time_since_epoch() == 2500ms);
    CHECK(time.unix_seconds() == 44);
}

TEST_CASE("clock: steady_clock is monotonic", "[clock]") {
    const warren::steady_clock time;
    auto previous = time.now();
    int backwards = 0;
    for (int i = 0; i < 10'000; ++i) {
        const auto next = time.now();
        if (next < previous) ++backwards;
        previous = next;
    }
    CHECK(backwards == 0);
    // It is std::chrono::steady_clock's time, at nanosecond resolution.
    const auto before = std::chrono::steady_clock::now().time_since_epoch();
    const auto read = time.now().time_since_epoch();
    const auto after = std::chrono::steady_clock::now().time_since_epoch();
    CHECK(before <= read);
    CHECK(read <= after);
}

TEST_CASE("clock: steady_clock reads unix_seconds from the system clock", "[clock]") {
    const warren::steady_clock time;
    auto wall = [] {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    const std::int64_t before = wall();
    const std::int64_t read = time.unix_seconds();
    const std::int64_t after = wall();
    CHECK(before <= read);
    CHECK(read <= after);
}

TEST_CASE("clock: steady_clock::instance is one shared clock", "[clock]") {
    CHECK(&warren::steady_clock::instance() == &warren::steady_clock::instance());
}

TEMPLATE_TEST_CASE("clock: a broker measures TTLs and x-death times by the clock it was given", "[clock]",
                   warren::broker, warren::concurrent_broker) {
    set_clock time;
    time.wall = 1234;
    TestType b(time);
    warren::queue_options options;
    options.arguments = {{"x-message-ttl", 100}, {"x-dead-letter-exchange", "amq.fanout"}};
    (void)b.declare_queue("q", options);
    (void)b.declare_queue("dead");
    b.bind_queue("dead", "amq.fanout");
    REQUIRE(b.publish("", {.routing_key = "q", .body = "m"}) == 1);

    time.at += 99ms;
    CHECK(b.expire() == 0);
    CHECK(b.message_count("q") == 1);
    time.at += 1ms;
    CHECK(b.expire() == 1);
    CHECK(b.message_count("q") == 0);

    auto d = b.try_get("dead");
    REQUIRE(d);
    const auto* deaths = d->properties().headers.find("x-death");
    REQUIRE(deaths != nullptr);
    REQUIRE(deaths->template get_if<warren::field_array>() != nullptr);
    const auto& death = deaths->template get_if<warren::field_array>()->front();
    REQUIRE(death.template get_if<warren::field_table>() != nullptr);
    const warren::field_value* stamp = death.template get_if<warren::field_table>()->find("time");
    REQUIRE(stamp != nullptr);
    CHECK(*stamp == warren::field_value(std::int64_t{1234}));
}

TEST_CASE("clock: manual_clock saturates at the last time point instead of wrapping around", "[clock][saturation]") {
    warren::manual_clock time;
    time.advance(std::chrono::nanoseconds::max());
    time.advance(1ns);
    CHECK(time.elapsed() == std::chrono::nanoseconds::max());
    CHECK(time.now() == warren::clock::time_point::max());
    time.advance(std::chrono::hours::max()); // more than nanoseconds can hold, converted saturating
    CHECK(time.elapsed() == std::chrono::nanoseconds::max());

    warren::manual_clock hours;
    hours.advance(std::chrono::hours::max());
    CHECK(hours.elapsed() == std::chrono::nanoseconds::max());
    warren::manual_clock fractional;
    fractional.advance(std::chrono::duration<double>(1.5e-3));
    CHECK(fractional.elapsed() == 1500us);
    fractional.advance(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN()));
    CHECK(fractional.elapsed() == 1500us); // not a step forward: ignored
}

TEST_CASE("clock: manual_clock's unix_seconds saturates too", "[clock][saturation]") {
    warren::manual_clock time(std::numeric_limits<std::int64_t>::max() - 1);
    time.advance(10s);
    CHECK(time.unix_seconds() == std::numeric_limits<std::int64_t>::max());
    warren::manual_clock early(std::numeric_limits<std::int64_t>::min());
    early.advance(std::chrono::nanoseconds::max());
    CHECK(early.unix_seconds() == std::numeric_limits<std::int64_t>::min() + 9'223'372'036);
}

TEMPLATE_TEST_CASE("clock: TTLs and x-expires near the ends of the clock neither overflow nor fire early", "[clock][saturation]",
                   warren::broker, warren::concurrent_broker) {
    set_clock time;
    time.at = warren::clock::time_point::max() - 1ms;
    TestType b(time);
    warren::queue_options options;
    options.arguments = {{"x-message-ttl", 315'360'000'000}, {"x-expires", 315'360'000'000}}; // ten years, the limit
    (void)b.declare_queue("q", options);
    warren::message m{.routing_key = "q", .body = "m"};
    m.properties.expiration = "315360000000";
    REQUIRE(b.publish("", std::move(m)) == 1);
    CHECK(b.expire() == 0);
    CHECK(b.message_count("q") == 1);
    CHECK(b.has_queue("q"));

    // A clock that jumps back to its first time point: nothing expires, nothing overflows.
    time.at = warren::clock::time_point::min();
    CHECK(b.expire() == 0);
    CHECK(b.message_count("q") == 1);
    CHECK(b.has_queue("q"));
    time.at = warren::clock::time_point::max();
    CHECK(b.expire() == 0); // a millisecond later than publishing: ten years are not over
    CHECK(b.message_count("q") == 1);
}

TEMPLATE_TEST_CASE("clock: a broker's time_source is the clock it was made with", "[clock][broker]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    const TestType with_manual(time);
    CHECK(&with_manual.time_source() == &time);
    time.advance(std::chrono::seconds(3));
    CHECK(with_manual.time_source().now().time_since_epoch() == std::chrono::seconds(3));
    const TestType with_default;
    CHECK(&with_default.time_source() == &warren::steady_clock::instance());
}
