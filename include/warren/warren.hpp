#pragma once
/// @file warren.hpp
/// Umbrella header: includes every public header of warren.

#include "broker.hpp"
#include "config.hpp"
#include "delivery.hpp"
#include "direct_exchange.hpp"
#include "error.hpp"
#include "exchange.hpp"
#include "fanout_exchange.hpp"
#include "field_table.hpp"
#include "fwd.hpp"
#include "headers_exchange.hpp"
#include "message.hpp"
#include "policy.hpp"
#include "properties.hpp"
#include "publisher.hpp"
#include "queue.hpp"
#include "routing_key.hpp"
#include "subscription.hpp"
#include "topic_exchange.hpp"
#include "topic_matcher.hpp"
