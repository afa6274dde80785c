#pragma once
// What the RESP fuzz targets share: a stream read twice, whole (one parse after another) and as a
// connection's reader receives it (two pieces into a buffer, parsed again as bytes come, but not
// before `needed` bytes are in), and the check that both readings agree.
#include "fuzz_check.hpp"

#include <coring/resp/resp.hpp>

#include <string>
#include <string_view>
#include <vector>

template <class Value>
struct resp_reading {
    std::vector<Value> values;  // the commands or replies, owned
    coring::resp::parse_status end = coring::resp::parse_status::incomplete;
    std::string error;
    bool operator==(const resp_reading&) const = default;
};

// `parse_one(bytes, value)` parses one command or reply from the start of `bytes` and, when
// complete, stores an owned copy in `value`.
template <class Value, class ParseOne>
resp_reading<Value> read_in_pieces(std::string_view in, std::size_t cut, ParseOne& parse_one) {
    using coring::resp::parse_status;
    resp_reading<Value> r;
    std::string buffer;
    std::size_t needed = 0;
    for (const std::string_view piece : {in.substr(0, cut), in.substr(cut)}) {
        buffer.append(piece);
        if (buffer.size() < needed) continue;
        while (true) {  // ends: each complete parse consumes at least one byte
            Value value;
            const coring::resp::parsed p = parse_one(std::string_view{buffer}, value);
            if (p.status == parse_status::error) {
                r.end = p.status;
                r.error = p.error;
                return r;
            }
            if (p.status == parse_status::incomplete) {
                needed = p.needed;
                break;
            }
            FUZZ_CHECK(p.consumed > 0 && p.consumed <= buffer.size());
            r.values.push_back(std::move(value));
            buffer.erase(0, p.consumed);
            needed = 0;
        }
    }
    return r;
}

// Whole is the same reader with everything in one piece.
template <class Value, class ParseOne>
void check_readings_agree(std::string_view in, std::size_t cut, ParseOne parse_one) {
    const auto whole = read_in_pieces<Value>(in, in.size(), parse_one);
    const auto pieces = read_in_pieces<Value>(in, cut, parse_one);
    FUZZ_CHECK(whole == pieces);
}
