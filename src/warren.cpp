// warren's compiled mode (see include/warren/compiled.hpp): the standard brokers, their
// queues and deliveries, instantiated once for every program that links warren::compiled.
#include <warren/warren.hpp>

namespace warren {
template class basic_broker<message, single_threaded>;
template class basic_broker<message, multi_threaded>;
template class basic_queue<message, single_threaded>;
template class basic_queue<message, multi_threaded>;
template class basic_delivery<message, single_threaded>;
template class basic_delivery<message, multi_threaded>;
} // namespace warren
