// A user-defined exchange type: consistent hashing, as RabbitMQ's x-consistent-hash plugin.
//
// Any type with `type_name`, bind, unbind and a const route satisfies warren::exchange_type
// (exchange.hpp) and can be registered with broker.register_exchange_type<T>().
//
// As in the plugin, the binding key is the binding's weight: a binding with weight w owns
// w buckets. A message's routing key is hashed onto one bucket with jump consistent hashing
// (Lamping & Veach), as the plugin does, so
//   - the same routing key always reaches the same queue while the bindings stay the same;
//   - keys spread over the queues in proportion to their weights;
//   - adding a binding moves only the keys that now belong to it; no key moves between the
//     queues that were already there.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <warren/warren.hpp>

namespace {

class consistent_hash_exchange {
public:
    static constexpr std::string_view type_name = "x-consistent-hash";

    /// The key must be a weight from 1 to max_weight, or the binding is refused.
    void bind(warren::destination d, std::string_view key, const warren::field_table& args) {
        bindings_.push_back({d, std::string(key), args, parse_weight(key)});
        rebuild();
    }
    void unbind(warren::destination d, std::string_view key, const warren::field_table& args) {
        auto it = std::find_if(bindings_.begin(), bindings_.end(),
                               [&](const binding& b) { return b.target == d && b.key == key && b.args == args; });
        if (it == bindings_.end()) return;
        bindings_.erase(it);
        rebuild();
    }
    void route(const warren::routing_view& msg, warren::destination_list& out) const {
        if (buckets_.empty()) return;
        out.add(buckets_[jump_hash(hash(msg.routing_key), buckets_.size())]);
    }

    /// RabbitMQ's plugin had no upper bound until a weight of 10^8 was found to exhaust
    /// memory; an example can afford to be modest.
    static constexpr std::uint32_t max_weight = 10000;

private:
    struct binding {
        warren::destination target;
        std::string key;
        warren::field_table args;
        std::uint32_t weight;
    };

    // Refusals in the plugin's words; RabbitMQ reports an invalid binding as
    // PRECONDITION_FAILED.
    static std::uint32_t parse_weight(std::string_view key) {
        std::int64_t weight = 0;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), weight);
        auto refuse = [](const std::string& text) {
            throw warren::error(warren::reply_code::precondition_failed, text);
        };
        if (key.empty() || ec != std::errc() || end != key.data() + key.size()) {
            refuse("The binding key must be an integer: '" + std::string(key) + "'");
        }
        if (weight < 1) refuse("The binding key must be greater than 0");
        if (weight > max_weight) refuse("The binding key must be at most " + std::to_string(max_weight));
        return static_cast<std::uint32_t>(weight);
    }

    // Buckets are numbered in binding order, so a new binding appends buckets: with jump
    // hashing, keys then move only into them.
    void rebuild() {
        buckets_.clear();
        for (const auto& b : bindings_) buckets_.insert(buckets_.end(), b.weight, b.target);
    }

    /// FNV-1a with a final mix: stable across platforms, unlike std::hash.
    static std::uint64_t hash(std::string_view key) noexcept {
        std::uint64_t h = 0xcbf29ce484222325ULL;
        for (const char c : key) {
            h ^= static_cast<unsigned char>(c);
            h *= 0x100000001b3ULL;
        }
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return h;
    }

    /// Jump consistent hash: the bucket of `key` among `n`.
    static std::size_t jump_hash(std::uint64_t key, std::size_t n) noexcept {
        std::uint64_t b = 0;
        std::uint64_t j = 0;
        while (j < n) {
            b = j;
            key = key * 2862933555777941757ULL + 1;
            j = static_cast<std::uint64_t>(static_cast<double>(b + 1) *
                                           (static_cast<double>(1ULL << 31) / static_cast<double>((key >> 33) + 1)));
        }
        return static_cast<std::size_t>(b);
    }

    std::vector<binding> bindings_;
    std::vector<warren::destination> buckets_; // bucket number -> where it leads
};

static_assert(warren::exchange_type<consistent_hash_exchange>);

constexpr int order_count = 1000;

std::string order_key(int i) { return "order-" + std::to_string(i); }

/// Publishes every order key once and returns, for each key, the queue it landed in.
std::map<std::string, std::string> place_orders(warren::broker& broker, const std::vector<std::string>& queues,
                                                bool& ok) {
    for (int i = 0; i < order_count; ++i) {
        ok &= broker.publish("orders", {.routing_key = order_key(i), .body = "order"}) == 1;
    }
    std::map<std::string, std::string> landed;
    for (const auto& q : queues) {
        while (auto d = broker.try_get(q)) landed[std::string(d->routing_key())] = q;
    }
    ok &= landed.size() == order_count;
    return landed;
}

void print_spread(const std::map<std::string, std::string>& landed, const std::vector<std::string>& queues,
                  const std::vector<int>& weights) {
    int total_weight = 0;
    for (const int w : weights) total_weight += w;
    for (std::size_t i = 0; i < queues.size(); ++i) {
        const auto n = std::count_if(landed.begin(), landed.end(), [&](const auto& e) { return e.second == queues[i]; });
        std::cout << "  " << queues[i] << " (weight " << weights[i] << ", expect ~" << order_count * weights[i] / total_weight
                  << "): " << std::setw(4) << n << "  " << std::string(static_cast<std::size_t>(n / 10), '#') << '\n';
    }
}

} // namespace

int main() {
    warren::broker broker;
    broker.register_exchange_type<consistent_hash_exchange>();
    broker.declare_exchange("orders", "x-consistent-hash");

    std::vector<std::string> shards{"shard-1", "shard-2", "shard-3"};
    std::vector<int> weights{1, 1, 2};
    for (std::size_t i = 0; i < shards.size(); ++i) {
        broker.declare_queue(shards[i]);
        broker.bind_queue(shards[i], "orders", std::to_string(weights[i])); // binding key = weight
    }
    std::cout << "Exchange 'orders' of type x-consistent-hash; bindings: shard-1 \"1\", shard-2 \"1\", shard-3 \"2\"\n";

    bool ok = true;
    auto expect = [&ok](bool condition, const char* what) {
        if (!condition) {
            std::cout << "FAILED: " << what << '\n';
            ok = false;
        }
    };

    std::cout << "\n" << order_count << " orders, each to exactly one shard:\n";
    const auto before = place_orders(broker, shards, ok);
    print_spread(before, shards, weights);
    for (std::size_t i = 0; i < shards.size(); ++i) {
        const auto n = std::count_if(before.begin(), before.end(), [&](const auto& e) { return e.second == shards[i]; });
        const int expected = order_count * weights[i] / 4;
        expect(n > expected * 3 / 4 && n < expected * 5 / 4, "keys spread by weight (within 25%)");
    }

    std::cout << "\nThe same key always lands on the same shard:\n";
    const std::string key = order_key(42);
    std::vector<std::string> seen;
    for (int i = 0; i < 5; ++i) {
        (void)broker.publish("orders", {.routing_key = key, .body = "update " + std::to_string(i)});
    }
    for (const auto& q : shards) {
        while (auto d = broker.try_get(q)) seen.push_back(q);
    }
    std::cout << "  5 updates of '" << key << "' landed on:";
    for (const auto& q : seen) std::cout << ' ' << q;
    std::cout << '\n';
    expect(seen == std::vector<std::string>(5, before.at(key)), "a key's messages stay on one shard");

    std::cout << "\nAdding shard-4 (weight \"1\") moves only the keys that now belong to it:\n";
    broker.declare_queue("shard-4");
    broker.bind_queue("shard-4", "orders", "1");
    shards.push_back("shard-4");
    weights.push_back(1);
    const auto after = place_orders(broker, shards, ok);
    print_spread(after, shards, weights);
    int moved = 0;
    bool only_to_new = true;
    for (const auto& [k, q] : before) {
        if (after.at(k) == q) continue;
        ++moved;
        only_to_new &= after.at(k) == "shard-4";
    }
    std::cout << "  " << moved << " of " << order_count << " keys moved, " << (only_to_new ? "all" : "NOT all")
              << " of them to shard-4 (hash mod N would have moved about 4 in 5)\n";
    expect(only_to_new, "keys move only to the new shard");
    expect(moved > 100 && moved < 300, "about a fifth of the keys move");

    std::cout << "\nUnbinding shard-4 gives its buckets back: every key returns to its old shard:\n";
    broker.unbind_queue("shard-4", "orders", "1");
    const auto restored = place_orders(broker, shards, ok);
    std::cout << "  " << (restored == before ? "all" : "NOT all") << " " << order_count << " keys are where they were\n";
    expect(restored == before, "unbinding restores the old placement");

    std::cout << "\nA binding key that is not a weight is refused:\n";
    try {
        broker.bind_queue("shard-1", "orders", "heavy");
        expect(false, "binding with key 'heavy' should throw");
    } catch (const warren::error& e) {
        std::cout << "  bind with key 'heavy' -> " << e.what() << '\n';
        expect(e.code() == warren::reply_code::precondition_failed, "bad weight is precondition_failed");
    }

    return ok ? 0 : 1;
}
