// basic_queue_handle across threads: a consumer thread that waits on its handle.

#include <chrono>
#include <thread>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using warren_test::msg;

TEST_CASE("queue handle: try_get_for waits for a message from another thread", "[queue_handle][multithread]") {
    warren::concurrent_broker b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    CHECK_FALSE(q.try_get_for(10ms));
    std::thread producer([&] {
        std::this_thread::sleep_for(20ms);
        (void)b.publish("", msg("q", "hello"));
    });
    auto got = q.try_get_for(5s);
    producer.join();
    REQUIRE(got);
    CHECK(got->body() == "hello");
}
