// RabbitMQ's and Apache Qpid's own topic-exchange test cases, as data.
// topic_suites.inc is generated from topic_suites.json by make_topic_suites.py.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

namespace warren_test {

/// One upstream test case: after binding every (pattern, destination) pair, a message
/// with `routing_key` reaches exactly the destinations in `expected`.
struct topic_suite_case {
    std::string_view group;       ///< upstream suite and test, e.g. rmq.routing_SUITE.topic1.phase1
    std::string_view source;      ///< upstream file@commit:lines
    std::string_view routing_key;
    std::vector<std::pair<std::string_view, std::string_view>> bindings; ///< (pattern, destination)
    std::vector<std::string_view> expected;                              ///< sorted, each once
};

/// All cases, in the order of topic_suites.json.
inline const std::vector<topic_suite_case>& topic_suites() {
    static const std::vector<topic_suite_case> cases{
#include "topic_suites.inc"
    };
    return cases;
}

} // namespace warren_test
