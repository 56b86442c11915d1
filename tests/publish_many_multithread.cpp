// publish_many under concurrent_broker: batches from several producer threads, taken by
// consumer threads in batches, while another thread changes the topology. Every message
// arrives once in every queue it was routed to, each producer's in the order it published.

#include <atomic>
#include <cstddef>
#include <string>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/scale.hpp"
#include "support/threads.hpp"

using warren_test::joining_thread;

TEST_CASE("publish_many (threads): batches from four producers reach every queue once, each producer's in order",
          "[multithread][publish_many]") {
    constexpr std::size_t producers = 4;
    constexpr std::size_t batch = 64;
    const std::size_t per_producer = warren_test::at_scale(std::size_t{20000}) / batch * batch;
    warren::concurrent_broker b;
    b.declare_exchange("ev", "direct");
    (void)b.declare_queue("ordered"); // one consumer: order is observable
    (void)b.declare_queue("shared");  // two consumers: only counts
    (void)b.declare_queue("churn");
    b.bind_queue("ordered", "ev", "k");
    b.bind_queue("shared", "ev", "k");

    std::atomic<bool> producing{true};
    std::atomic<std::size_t> churn_rounds{0};
    std::vector<std::size_t> next_of(producers, 0); // the ordered consumer's view, per producer
    std::atomic<std::size_t> out_of_order{0}, ordered_taken{0}, shared_taken{0};
    {
        std::vector<joining_thread> threads;
        for (std::size_t p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                const auto ev = b.make_publisher("ev");
                std::vector<std::string> bodies;
                for (std::size_t i = 0; i < per_producer; i += batch) {
                    bodies.clear();
                    for (std::size_t j = 0; j < batch; ++j) bodies.push_back(std::to_string(p) + ":" + std::to_string(i + j));
                    (void)ev.publish_many("k", bodies);
                }
            });
        }
        threads.emplace_back([&] { // topology changes between and during batches
            while (producing) {
                b.bind_queue("churn", "ev", "k");
                b.unbind_queue("churn", "ev", "k");
                ++churn_rounds;
            }
        });
        threads.emplace_back([&] {
            const auto q = b.make_queue_handle("ordered");
            std::vector<warren::concurrent_broker::delivery> got;
            while (ordered_taken < producers * per_producer) {
                got.clear();
                (void)q.try_get_many(got, batch);
                for (const auto& d : got) {
                    const std::string& body = d.body();
                    const std::size_t colon = body.find(':');
                    const std::size_t p = std::stoul(body.substr(0, colon));
                    const std::size_t i = std::stoul(body.substr(colon + 1));
                    if (i != next_of[p]) ++out_of_order;
                    next_of[p] = i + 1;
                    ++ordered_taken;
                }
            }
        });
        for (int c = 0; c < 2; ++c) {
            threads.emplace_back([&] {
                const auto q = b.make_queue_handle("shared");
                std::vector<warren::concurrent_broker::delivery> got;
                while (shared_taken < producers * per_producer) {
                    got.clear();
                    shared_taken += q.try_get_many(got, batch);
                }
            });
        }
        for (std::size_t p = 0; p < producers; ++p) threads[p].join();
        producing = false;
    }
    CHECK(out_of_order == 0);
    CHECK(ordered_taken == producers * per_producer);
    CHECK(shared_taken == producers * per_producer);
    for (std::size_t p = 0; p < producers; ++p) CHECK(next_of[p] == per_producer);
    const auto ev = b.exchange_stats("ev");
    CHECK(ev.published == producers * per_producer);
    CHECK(ev.unroutable == 0);
    const auto churn = b.queue_stats("churn");
    CHECK(churn.enqueued == churn.ready); // what the churning binding caught, whole messages only
    CHECK(churn_rounds > 0);
}
