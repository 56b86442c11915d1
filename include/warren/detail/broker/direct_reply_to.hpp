#pragma once
/// @file detail/broker/direct_reply_to.hpp
/// RabbitMQ's direct reply-to: the pseudo-queue's names, and the table of its consumers
/// that a publish with reply_to = "amq.rabbitmq.reply-to" is rewritten from.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "../../config.hpp"
#include "../../error.hpp"
#include "../../options.hpp"
#include "../core/name_map.hpp"

namespace warren::detail {

/// Whether `name` is the pseudo-queue or one of the addresses the broker writes into
/// reply_to ("amq.rabbitmq.reply-to.<token>"). Costs a length test for most names.
[[nodiscard]] constexpr bool names_direct_reply_to(std::string_view name) noexcept {
    constexpr std::size_t n = direct_reply_to_queue.size();
    return name.size() >= n && name.substr(0, n) == direct_reply_to_queue && (name.size() == n || name[n] == '.');
}

/// The direct reply-to consumers of one broker: each consumer tag and the address its
/// replies are published to, the name of the private queue that feeds its callback.
///
/// warren has no channels, so the consumer tag stands for the channel: at most one reply
/// consumer per tag (RabbitMQ: one per channel), and a publish names the tag of the
/// consumer whose address goes into its reply_to (publish_options::reply_consumer), or
/// none when there is a single reply consumer. Not thread-safe: the broker's topology
/// lock guards it (unique to change, shared to look up).
class direct_reply_consumers {
public:
    /// Refuses a second reply consumer under `tag`, in RabbitMQ's words for a second one on
    /// a channel (precondition_failed).
    void check_free(std::string_view tag) const {
        if (by_tag_.find(tag) != by_tag_.end()) raise(reply_code::precondition_failed, "reply consumer already set");
    }
    /// Registers the consumer `tag` whose replies go to `address`.
    void add(const std::string& tag, const std::string& address) {
        by_tag_.emplace(tag, address);
        try_add_reverse(tag, address);
    }
    /// Forgets the consumer whose address is `address` (its private queue was deleted).
    void remove_address(std::string_view address) noexcept {
        const auto it = tag_of_.find(address);
        if (it == tag_of_.end()) return;
        const auto tag = by_tag_.find(it->second);
        if (tag != by_tag_.end()) by_tag_.erase(tag);
        tag_of_.erase(it);
    }
    /// The address to write into the reply_to of a publish that names `tag` (empty: the
    /// only reply consumer). precondition_failed "fast reply consumer does not exist", as
    /// RabbitMQ has it, when there is no such consumer; when `tag` is empty and there are
    /// several, precondition_failed saying the publish must name one.
    [[nodiscard]] const std::string& resolve(std::string_view tag) const {
        if (tag.empty()) {
            if (by_tag_.size() == 1) return by_tag_.begin()->second;
            if (by_tag_.size() > 1) {
                raise(reply_code::precondition_failed,
                      "fast reply consumer is ambiguous: " + std::to_string(by_tag_.size()) + " consumers of " +
                          quoted(direct_reply_to_queue) + ", and publish_options::reply_consumer names none");
            }
        } else if (const auto it = by_tag_.find(tag); it != by_tag_.end()) {
            return it->second;
        }
        raise(reply_code::precondition_failed, "fast reply consumer does not exist");
    }
    /// Reply consumers registered.
    [[nodiscard]] std::size_t size() const noexcept { return by_tag_.size(); }

private:
    void try_add_reverse(const std::string& tag, const std::string& address) {
        WARREN_TRY {
            tag_of_.emplace(address, tag);
        }
        WARREN_CATCH_ALL {
            by_tag_.erase(tag); // both or neither
            WARREN_RETHROW;
        }
    }

    name_map<std::string> by_tag_;  // consumer tag -> address
    name_map<std::string> tag_of_;  // address -> consumer tag
};

} // namespace warren::detail
