#pragma once
// coring-load's command line as parsed, and its end-of-run report (report.cpp).
#include "load.hpp"

#include <coring/run.hpp>

#include <cstdint>
#include <string>

namespace coring::load {

struct options {
    settings s;
    unsigned procs = 1;
    std::string json;
    bool quiet = false;
};

std::string num(double v);        // "%.3f"
std::string us(std::uint64_t ns);  // nanoseconds as microseconds, "%.3f"
const char* protocol_name(protocol p);

// The summary, the key=value line and the --json file of an echo, HTTP or WebSocket run; the
// exit code: 1 when any error happened (the result is then partial) or `failed`.
int report(const options& o, const runtime_options& runtime, const results& r, bool failed);
// The same for pub/sub; 1 also when anything was lost, duplicated or reordered among the
// subscribers that kept reading.
int report_pubsub(const options& o, const results& r, bool failed, const pubsub_board* board);

}  // namespace coring::load
