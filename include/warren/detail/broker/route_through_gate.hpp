#pragma once
/// @file detail/broker/route_through_gate.hpp
/// route_through_gate(): dead letters to the router by way of the queue's router gate.
/// (Its own header, without the router's, because delivery.hpp needs it before the
/// router's header can be complete: see the end of delivery.hpp.)

namespace warren::detail {

/// Routes what `queue` let go of through the queue's router gate: the way for the holders
/// of deliveries and queue handles, which may outlive the broker (and for a wait, during
/// which another thread may destroy it). Once the broker is going away the gate hands out
/// an empty pass, and the letters are dropped with `dead`.
template <class Queue>
void route_through_gate(Queue& queue, typename Queue::dead_letters& dead) {
    if (dead.empty()) return;
    if (auto pass = queue.pass_to_router()) pass->route_from(queue, dead);
}

} // namespace warren::detail
