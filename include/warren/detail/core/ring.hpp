#pragma once
/// @file detail/core/ring.hpp
/// A growable ring buffer: FIFO storage that allocates nothing in steady state.

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace warren::detail {

/// A double-ended queue over one power-of-two array. Unlike std::deque it keeps its
/// storage when it drains, so a queue that fills and empties every frame stops allocating.
template <class T>
class ring {
public:
    ring() = default;
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ring(ring&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)),
          head_(std::exchange(other.head_, 0)), size_(std::exchange(other.size_, 0)) {}
    ring& operator=(ring&&) = delete;
    ~ring() {
        clear();
        if (data_) std::allocator<T>().deallocate(data_, capacity_);
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

    T& operator[](std::size_t i) noexcept { return data_[(head_ + i) & (capacity_ - 1)]; }
    const T& operator[](std::size_t i) const noexcept { return data_[(head_ + i) & (capacity_ - 1)]; }
    T& front() noexcept { return (*this)[0]; }
    const T& front() const noexcept { return (*this)[0]; }
    T& back() noexcept { return (*this)[size_ - 1]; }

    void push_back(T value) { emplace_back(std::move(value)); }
    /// Constructs the new last element in place (no temporary to move and destroy).
    template <class... Args>
    T& emplace_back(Args&&... args) {
        reserve_one();
        T* slot = &data_[(head_ + size_) & (capacity_ - 1)];
        ::new (static_cast<void*>(slot)) T{std::forward<Args>(args)...};
        ++size_;
        return *slot;
    }
    void push_front(T value) {
        reserve_one();
        head_ = (head_ + capacity_ - 1) & (capacity_ - 1);
        ::new (static_cast<void*>(&data_[head_])) T(std::move(value));
        ++size_;
    }
    /// Inserts before position `pos`, moving whichever side is shorter.
    void insert(std::size_t pos, T value) {
        if (pos < size_ / 2) {
            push_front(std::move(value));
            for (std::size_t i = 0; i < pos; ++i) std::swap((*this)[i], (*this)[i + 1]);
        } else {
            push_back(std::move(value));
            for (std::size_t i = size_ - 1; i > pos; --i) std::swap((*this)[i], (*this)[i - 1]);
        }
    }
    T pop_front() {
        T value = std::move(front());
        drop_front();
        return value;
    }
    /// Destroys the first element (what the caller still needs of it moved out first).
    void drop_front() noexcept {
        front().~T();
        head_ = (head_ + 1) & (capacity_ - 1);
        --size_;
    }
    T pop_back() {
        T value = std::move(back());
        back().~T();
        --size_;
        return value;
    }
    /// Takes the element at `pos` out, the others keeping their order.
    T take(std::size_t pos) {
        for (std::size_t i = pos; i > 0; --i) std::swap((*this)[i], (*this)[i - 1]);
        return pop_front();
    }
    void clear() noexcept {
        while (size_ > 0) {
            front().~T();
            head_ = (head_ + 1) & (capacity_ - 1);
            --size_;
        }
    }

private:
    void reserve_one() {
        if (size_ < capacity_) return;
        const std::size_t grown = capacity_ == 0 ? 16 : capacity_ * 2;
        T* fresh = std::allocator<T>().allocate(grown);
        for (std::size_t i = 0; i < size_; ++i) {
            ::new (static_cast<void*>(&fresh[i])) T(std::move((*this)[i]));
            (*this)[i].~T();
        }
        if (data_) std::allocator<T>().deallocate(data_, capacity_);
        data_ = fresh;
        capacity_ = grown;
        head_ = 0;
    }

    T* data_ = nullptr;
    std::size_t capacity_ = 0; // zero or a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

} // namespace warren::detail
