#pragma once
// result<T>: the outcome of an I/O call, a value or a std::error_code (system category).
// I/O errors are everyday events on a server (ECONNRESET, ECANCELED, ETIMEDOUT), so they are
// values, never exceptions; value() on an error is the one place that throws.
#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace coring {

// The one place where a negative kernel result becomes an error code.
[[nodiscard]] inline std::error_code to_error(int negative_res) noexcept {
    return {-negative_res, std::system_category()};
}

template <class T>
class [[nodiscard]] result {
public:
    result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit by design
        : state_{std::in_place_index<0>, std::move(value)} {}
    result(std::error_code ec) noexcept : state_{std::in_place_index<1>, ec} { assert(ec); }  // NOLINT
    result(std::errc e) noexcept : result{std::make_error_code(e)} {}                          // NOLINT

    explicit operator bool() const noexcept { return state_.index() == 0; }
    bool has_value() const noexcept { return state_.index() == 0; }

    T& operator*() & noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
    const T& operator*() const& noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
    T&& operator*() && noexcept { assert(has_value()); return std::move(*std::get_if<0>(&state_)); }
    T* operator->() noexcept { return &**this; }
    const T* operator->() const noexcept { return &**this; }

    // Throws std::system_error on an error: for setup code and tests, not for the data path.
    T& value() & { check(); return **this; }
    T&& value() && { check(); return std::move(**this); }

    std::error_code error() const noexcept {
        const auto* ec = std::get_if<1>(&state_);
        return ec ? *ec : std::error_code{};
    }

private:
    void check() const {
        if (!has_value()) throw std::system_error(error());
    }
    std::variant<T, std::error_code> state_;
};

template <>
class [[nodiscard]] result<void> {
public:
    result() noexcept = default;
    result(std::error_code ec) noexcept : ec_{ec} {}                        // NOLINT
    result(std::errc e) noexcept : ec_{std::make_error_code(e)} {}          // NOLINT

    explicit operator bool() const noexcept { return !ec_; }
    bool has_value() const noexcept { return !ec_; }
    void value() const {
        if (ec_) throw std::system_error(ec_);
    }
    std::error_code error() const noexcept { return ec_; }

private:
    std::error_code ec_;
};

}  // namespace coring
