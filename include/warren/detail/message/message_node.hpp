#pragma once
/// @file detail/message/message_node.hpp
/// The shared, immutable form a message takes once published.

#include <chrono>
#include <cstddef>
#include <cstring>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <utility>

#include "../../config.hpp"
#include "../../properties.hpp"
#include "../../routing_key.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_text.hpp"
#include "key_storage.hpp"
#include "message_pool.hpp"
#include "stored_properties.hpp"

namespace warren::detail {

template <class Body>
concept byte_range = std::ranges::sized_range<const Body> && sizeof(std::ranges::range_value_t<const Body>) == 1;

/// The bytes a body counts for in x-max-length-bytes: the size of a range of byte-sized
/// elements (std::string, std::vector<std::byte>, ...), else the size of the object.
template <class Body>
[[nodiscard]] std::size_t body_size(const Body& body) noexcept {
    if constexpr (byte_range<Body>) {
        return static_cast<std::size_t>(std::ranges::size(body));
    } else {
        return sizeof(Body);
    }
}

/// A published message and where it came from. Queues hold references to one node, so
/// a message routed to ten queues is stored once.
///
/// The layout pays only for what a message uses: the routing key's bytes follow the node
/// in its own block (key_storage: a few size classes, pooled under single_threaded), the
/// properties are out of line and only when set (stored_properties), and the body is
/// moved in once. So under single_threaded a message is stored without an allocation once
/// warm, whatever its key's length, and one that sets no property carries no property
/// storage. Immutable once made. Thread safety: shared read-only; the reference count
/// follows the policy.
template <class Message, class Policy>
struct message_node final : ref_counted<Policy> {
    using body_type = typename Message::body_type;
    using text = shared_text<Policy>;

    /// A node of `routing_key` (at most 255 bytes, checked by the caller), `body` (moved
    /// from) and the properties `*set` (moved from; null: the message sets none), published
    /// to `exchange_name`. Exception-safe: what allocation or the body's move throws leaves
    /// nothing allocated; `*set` is untouched unless the body's move throws.
    [[nodiscard]] static ref_ptr<message_node> make(std::string_view routing_key, body_type& body,
                                                    warren::properties* set, ref_ptr<text> exchange_name,
                                                    std::optional<std::chrono::milliseconds> message_ttl = {}) {
        WARREN_ASSERT(routing_key.size() <= max_name_length, "routing keys are checked before they are stored");
        struct room {
            void* block;
            std::size_t key_length;
            ~room() {
                if (block != nullptr) storage::deallocate(block, key_length);
            }
        } r{storage::allocate(routing_key.size()), routing_key.size()};
        unsigned char* const key = storage::key_bytes(r.block);
        if (!routing_key.empty()) std::memcpy(key, routing_key.data(), routing_key.size());
        auto* n = ::new (r.block) message_node(std::string_view(reinterpret_cast<const char*>(key), routing_key.size()),
                                               set, body, std::move(exchange_name), message_ttl);
        r.block = nullptr; // the node owns it now
        return ref_ptr<message_node>(n);
    }

    /// The last reference's `delete`: the node's block has the size of its key's class.
    static void operator delete(message_node* n, std::destroying_delete_t) noexcept { destroy(n); }

    /// The routing key it was published with; lives as long as the node.
    [[nodiscard]] std::string_view routing_key() const noexcept { return key_; }
    /// Its properties: no_properties() for a message that set none.
    [[nodiscard]] const warren::properties& properties() const noexcept { return properties_.get(); }
    [[nodiscard]] const std::string& exchange_name() const noexcept { return exchange->value; }

    /// The pools' idle rule, and shrink() (see message_pool).
    static void end_of_pool_period() noexcept { pools::end_of_period(); }
    static void shrink_pool() noexcept { pools::shrink(); }
    /// Blocks the pools hold for nodes and their properties: the calling thread's, and
    /// under multi_threaded the depot's.
    [[nodiscard]] static std::size_t pooled_blocks() noexcept { return pools::cached(); }

private:
    // Out of line, so that releasing a reference that is not the last stays a few
    // instructions (inlined, this path made every release save three registers).
    WARREN_NOINLINE static void destroy(message_node* n) noexcept {
        const std::size_t key_length = n->key_.size();
        n->~message_node();
        storage::deallocate(n, key_length);
    }

    using storage = key_storage<message_node, message_pool<Policy>::template type>;
    // The nodes' pools and the properties'.
    using pools = typename storage::template pools<sizeof(warren::properties)>;

    message_node(std::string_view key, warren::properties* set, body_type& b, ref_ptr<text> exchange_name,
                 std::optional<std::chrono::milliseconds> message_ttl)
        : properties_(set), body(std::move(b)), exchange(std::move(exchange_name)), ttl(message_ttl),
          body_bytes(body_size(body)), key_(key) {}

    // First, so that its allocation comes before the body is moved.
    stored_properties<Policy> properties_;

public:
    body_type body;
    ref_ptr<text> exchange;
    std::optional<std::chrono::milliseconds> ttl; ///< from the expiration property, parsed once
    std::size_t body_bytes;

private:
    std::string_view key_; // the bytes after the node
};

} // namespace warren::detail
