#pragma once
/// @file fwd.hpp
/// Forward declarations and the default aliases.

#include <string>

#include "message.hpp"
#include "policy.hpp"

namespace warren {

template <message_type Message = basic_message<std::string>, threading_policy Policy = single_threaded>
class basic_broker;
template <class Message, threading_policy Policy>
class basic_queue;
template <class Message, threading_policy Policy>
class basic_delivery;
template <class Broker>
class basic_subscription;
template <class Broker>
class basic_publisher;
template <class Broker>
class basic_queue_handle;

/// A message with a std::string body.
using message = basic_message<std::string>;
/// A single-threaded broker of string messages: the owner thread publishes and dispatches.
using broker = basic_broker<>;
/// A thread-safe broker of string messages.
using concurrent_broker = basic_broker<message, multi_threaded>;
/// What a consumer of `broker` receives.
using delivery = basic_delivery<message, single_threaded>;
/// The subscription handle of `broker`.
using subscription = basic_subscription<broker>;
/// The publisher handle of `broker`.
using publisher = basic_publisher<broker>;
/// The queue handle of `broker`.
using queue_handle = basic_queue_handle<broker>;

} // namespace warren
