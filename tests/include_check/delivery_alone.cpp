// A program whose only file includes only <warren/delivery.hpp> and settles deliveries: it
// links only if ack(), nack() and reject() are defined where a user of delivery.hpp finds
// them (built and run by tests/CMakeLists.txt as the test include/delivery_alone).

#include <warren/delivery.hpp>

namespace {

// Not a template: the settlements are instantiated here, from delivery.hpp alone.
void settle(warren::delivery& first, warren::delivery& second, warren::delivery& third) {
    first.ack();
    second.nack(false, false);
    third.reject(false);
}

} // namespace

int main(int argc, char**) {
    // Never called (no delivery can be made without a broker), but referenced, so that the
    // program fails to link if the definitions are missing.
    void (*volatile use)(warren::delivery&, warren::delivery&, warren::delivery&) = &settle;
    return argc > 1000 && use != nullptr ? 1 : 0;
}
