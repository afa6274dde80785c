// Precompiled for every test file (tests/meson.build, cpp_pch): Catch2's single header and the
// runtime's are a quarter of each file's compile time, and CI builds the suite three times.
#include <catch2/catch.hpp>
#include <coring/coring.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>
