#pragma once
// Flag parsing shared by the apps: "--flag value" or "--flag=value", runtime flags handled by
// runtime_options, --help prints usage and exits 0, anything wrong prints one line and exits 2.
#include <coring/address.hpp>
#include <coring/log.hpp>
#include <coring/run.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring::apps {

// The value of an address flag, or std::invalid_argument naming the flag, value and reason.
inline address address_flag(std::string_view flag, std::string_view value) {
    auto a = address::parse(value);
    if (!a) throw std::invalid_argument(std::string{flag} + " " + std::string{value} + ": " + a.error().message());
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
inline void parse_flags(int argc, char** argv, std::string_view usage, runtime_options& runtime,
                        const std::function<bool(std::string_view, std::string_view)>& app_flag,
                        std::initializer_list<std::string_view> switches = {}) {
    const char* prog = ::program_invocation_short_name;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::printf("%.*s\nruntime flags:\n%.*s", static_cast<int>(usage.size()), usage.data(),
                        static_cast<int>(runtime_options::help().size()), runtime_options::help().data());
            std::exit(0);
        }
        try {
            if (flag.substr(0, 2) != "--")
                throw std::invalid_argument("unexpected argument '" + std::string{flag} + "' (see --help)");
            std::string_view value;
            bool is_switch = false;
            for (auto s : switches) is_switch |= (s == flag);
            is_switch |= runtime_options::is_switch(flag);
            if (const auto eq = flag.find('='); eq != std::string_view::npos) {
                value = flag.substr(eq + 1);
                flag = flag.substr(0, eq);
            } else if (!is_switch) {
                if (i + 1 >= argc) throw std::invalid_argument(std::string{flag} + ": missing value");
                value = argv[++i];
            }
            if (!(runtime.set(flag, value) || app_flag(flag, value)))
                throw std::invalid_argument("unknown flag " + std::string{flag} + " (see --help)");
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "%s: %s\n", prog, e.what());
            std::exit(2);
        }
    }
}

}  // namespace coring::apps
