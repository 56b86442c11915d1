// Under concurrent_broker a message made on a producer thread and freed on a consumer
// thread finds its way back (depot_block_pool): once warm, the producer stops allocating
// nodes, one message at a time or in batches, and the consumer allocates nothing.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/counting_allocator.hpp"
#include "support/scale.hpp"
#include "support/threads.hpp"

using warren_test::allocation_counter;
using warren_test::joining_thread;

namespace {

struct position_event {
    std::uint64_t id;
    double x, y;
};
using cross_thread_broker = warren::basic_broker<warren::basic_message<position_event>, warren::multi_threaded>;

struct cross_thread_round {
    std::size_t producer_allocations = 0;
    std::size_t consumer_allocations = 0;
    std::size_t taken = 0;
};

/// One round: a producer thread publishes `total` events with a 100-byte key (in batches of
/// `batch`, or one by one when it is 1), never more than about `ahead` ahead of the
/// consumer thread, which takes them 64 at a time; with `consumer_waits`, the consumer
/// starts only once the producer is that far ahead, so the round reaches its bound.
cross_thread_round run_round(cross_thread_broker& b, const std::string& key, std::size_t total, std::size_t batch,
                             std::size_t ahead, bool consumer_waits) {
    cross_thread_round r;
    std::atomic<std::size_t> taken{0};
    std::atomic<std::size_t> published{0};
    const auto pub = b.make_publisher("ev");
    const auto q = b.make_queue_handle("q");
    {
        joining_thread consumer([&] {
            std::vector<cross_thread_broker::delivery> got;
            got.reserve(64);
            while (consumer_waits && published.load() < std::min(total, ahead)) std::this_thread::yield();
            allocation_counter counter;
            while (taken.load() < total) {
                got.clear();
                const std::size_t n = q.try_get_many(got, 64);
                if (n == 0) std::this_thread::yield();
                taken += n;
            }
            got.clear();
            r.consumer_allocations = counter.count();
        });
        joining_thread producer([&] {
            std::vector<position_event> bodies;
            bodies.reserve(batch);
            allocation_counter counter;
            for (std::size_t i = 0; i < total; i += batch) {
                while (i - taken.load() > ahead) std::this_thread::yield();
                if (batch == 1) {
                    (void)pub.publish(key, position_event{i, 1.0, 2.0});
                } else {
                    bodies.clear();
                    for (std::size_t j = i; j < i + batch && j < total; ++j) bodies.push_back(position_event{j, 1.0, 2.0});
                    (void)pub.publish_many(key, bodies);
                }
                published = i + batch;
            }
            r.producer_allocations = counter.count();
        });
    }
    r.taken = taken.load();
    return r;
}

} // namespace

TEST_CASE("allocation (threads): once warm, messages freed on the consumer thread are reused by the producer thread",
          "[allocation][multithread][publish_many]") {
    const std::string key = "unit." + std::string(90, 'x') + ".spawned"; // 100 bytes
    const std::size_t total = warren_test::at_scale(100000);
    cross_thread_broker b;
    b.declare_exchange("ev", "direct");
    b.declare_queue("q");
    b.bind_queue("q", "ev", key);
    const std::size_t batch = GENERATE(std::size_t{1}, std::size_t{64});
    CAPTURE(batch);
    // Warm: the pools grow to what is in flight. The warm round holds twice as many in
    // flight as the measured one can, whatever the scheduling, so the measured round never
    // needs more blocks than the pools already hold.
    (void)run_round(b, key, total, batch, 2048, true);
    const cross_thread_round warm = run_round(b, key, total, batch, 1024, false);
    CHECK(warm.taken == total);
    // Without the depot every node is an allocation on the producer (100,000 at full
    // scale). Each round runs on new threads, and a thread that ends frees what its cache
    // held beyond full magazines (fewer than 64 blocks): the next round's threads allocate
    // those again, a few magazines' worth at most.
    constexpr std::size_t magazine = warren::detail::depot_block_pool<64>::magazine;
    REQUIRE(total > 10 * 4 * magazine);
    CHECK(warm.producer_allocations <= 4 * magazine);
    CHECK(warm.consumer_allocations == 0);
}
