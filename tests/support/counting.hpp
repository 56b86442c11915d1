#pragma once
// Test helper: a body that counts its copies.

namespace warren_test {

/// A message body that counts how often bodies were copied, to show the broker moves
/// bodies and shares one message on fanout instead of copying it. Reset `copies` at the
/// start of a test.
struct copy_counter {
    inline static int copies = 0;

    int value = 0;

    copy_counter() = default;
    explicit copy_counter(int v) noexcept : value(v) {}
    copy_counter(const copy_counter& other) noexcept : value(other.value) { ++copies; }
    copy_counter(copy_counter&& other) noexcept = default;
    copy_counter& operator=(const copy_counter& other) noexcept {
        value = other.value;
        ++copies;
        return *this;
    }
    copy_counter& operator=(copy_counter&& other) noexcept = default;
    ~copy_counter() = default;
};

} // namespace warren_test
