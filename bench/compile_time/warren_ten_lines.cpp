// The 10-line program of issue 10: declare, bind, subscribe, publish, dispatch.
#include <warren/broker.hpp>
#include <cstdio>
int main() {
    warren::broker b;
    b.declare_exchange("events", "direct");
    b.declare_queue("q");
    b.bind_queue("q", "events", "k");
    auto sub = b.subscribe("q", [](warren::delivery& d) { std::printf("%s\n", d.body().c_str()); });
    (void)b.publish("events", {.routing_key = "k", .body = "hello"});
    return b.dispatch() == 1 ? 0 : 1;
}
