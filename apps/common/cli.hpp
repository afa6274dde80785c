#pragma once
// Flag helpers shared by the apps (not installed): "--flag value" or "--flag=value", runtime flags
// handled by runtime_options, --help prints usage and exits 0, anything wrong prints one line and
// exits 2. Programs outside this repository use runtime_options::from_args with their own flags.
#include <coring/address.hpp>
#include <coring/log.hpp>
#include <coring/run.hpp>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring::apps {

// The value of an address flag, or std::invalid_argument naming the flag, value and reason.
inline address address_flag(std::string_view flag, std::string_view value) {
    auto a = address::parse(value);
    if (!a) throw std::invalid_argument(std::string{flag} + " " + std::string{value} + ": " + address::explain_parse_error(value));
    return *a;
}

// The value of a numeric flag in [min, max], or std::invalid_argument naming flag, value and range.
inline double number_flag(std::string_view flag, std::string_view value, double min, double max) {
    const std::string text{value};
    char* end = nullptr;
    const double d = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !(d >= min && d <= max))
        throw std::invalid_argument(format("{} {}: expected a number from {} to {}", flag, value, min, max));
    return d;
}

// The same for a whole number.
inline unsigned long count_flag(std::string_view flag, std::string_view value, unsigned long min, unsigned long max) {
    const double d = number_flag(flag, value, static_cast<double>(min), static_cast<double>(max));
    if (d != static_cast<double>(static_cast<unsigned long>(d)))
        throw std::invalid_argument(format("{} {}: expected a whole number from {} to {}", flag, value, min, max));
    return static_cast<unsigned long>(d);
}

// app_flag(flag, value) returns false for a flag it does not know and throws
// std::invalid_argument for a bad value. Flags in `switches` take no value (value is "").
// runtime_options does the parsing, so the apps and from_args behave alike.
inline void parse_flags(int argc, char** argv, std::string_view usage, runtime_options& runtime,
                        const runtime_options::flag_handler& app_flag,
                        std::initializer_list<std::string_view> switches = {}) {
    runtime.parse_args_or_exit(argc, argv, usage, app_flag, switches);
}

}  // namespace coring::apps
