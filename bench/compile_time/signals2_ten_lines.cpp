// Boost.Signals2's equivalent of warren_ten_lines.cpp: connect a slot, emit, with a string.
#include <boost/signals2/signal.hpp>
#include <cstdio>
#include <string>
int main() {
    boost::signals2::signal<void(const std::string&)> events;
    int delivered = 0;
    auto connection = events.connect([&](const std::string& body) {
        std::printf("%s\n", body.c_str());
        ++delivered;
    });
    events(std::string("hello"));
    return delivered == 1 ? 0 : 1;
}
