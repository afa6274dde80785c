// fuzz-sources: net/resp/resp.cpp
// libFuzzer target: the RESP command parser over arbitrary bytes, read the way a server reads.
//
// The first three bytes pick small limits (so the "too big" and "invalid length" paths are
// reached by short inputs) and a cut point; the rest is the stream. It is parsed twice: whole
// (command after command) and as a reader receives it (in two pieces, re-parsed as they come,
// waiting for `needed` when a bulk is in flight), and in pieces again with a command_progress
// carried between the parses of one command. Invariants checked:
// - all readings give the same commands, then the same end (an error's text, or incomplete);
// - consumed is within the input and not zero; needed, when known, lies past the input;
// - every argument is a view into the input or into the scratch string;
// - an incomplete or failed parse leaves no arguments behind.
//
// Built and run by ./dev fuzz, or by hand (from the repository root):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet tests/fuzz/fuzz_resp_command.cpp \
//       net/resp/resp.cpp -o fuzz_resp_command && ./fuzz_resp_command -max_total_time=60 corpus tests/fuzz/corpus/resp_command
#include "resp_readings.hpp"

#include <coring/resp/resp.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace coring::resp;

namespace {

// One call, with the invariants every call must keep.
parsed parse_checked(std::string_view in, std::vector<std::string_view>& args, std::string& scratch,
                     const limits& lim, command_progress* progress = nullptr) {
    const parsed p = parse_command(in, args, scratch, lim, progress);
    if (progress) FUZZ_CHECK(progress->at <= in.size() && (p.status == parse_status::incomplete || progress->count == 0));
    switch (p.status) {
    case parse_status::complete:
        FUZZ_CHECK(p.consumed > 0 && p.consumed <= in.size());
        FUZZ_CHECK(args.size() <= lim.max_args || in[0] != '*');
        for (const auto a : args) {
            FUZZ_CHECK(inside(a, in.substr(0, p.consumed)) || inside(a, scratch));
            FUZZ_CHECK(a.size() <= lim.max_bulk || in[0] != '*');
        }
        break;
    case parse_status::incomplete:
        FUZZ_CHECK(args.empty());
        FUZZ_CHECK(p.needed == 0 || p.needed > in.size());
        break;
    case parse_status::error:
        FUZZ_CHECK(args.empty());
        FUZZ_CHECK(!p.error.empty());
        break;
    }
    return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    limits lim;
    lim.max_inline = 8 + data[0] % 64;
    lim.max_bulk = data[1] % 4 == 0 ? limits{}.max_bulk : data[1] % 40;
    lim.max_args = data[1] % 8 == 1 ? limits{}.max_args : 1 + data[0] % 5;
    const std::string_view in{reinterpret_cast<const char*>(data + 3), size - 3};
    const std::size_t cut = in.empty() ? 0 : (std::size_t{data[2]} * 257) % (in.size() + 1);

    std::vector<std::string_view> args;
    std::string scratch;
    auto plain = [&](std::string_view bytes, std::vector<std::string>& command) {
        const parsed p = parse_checked(bytes, args, scratch, lim);
        command.assign(args.begin(), args.end());
        return p;
    };
    check_readings_agree<std::vector<std::string>>(in, cut, plain);
    command_progress progress;
    auto resumed = [&](std::string_view bytes, std::vector<std::string>& command) {
        const parsed p = parse_checked(bytes, args, scratch, lim, &progress);
        command.assign(args.begin(), args.end());
        return p;
    };
    FUZZ_CHECK(read_in_pieces<std::vector<std::string>>(in, in.size(), plain) ==
               read_in_pieces<std::vector<std::string>>(in, cut, resumed));
    return 0;
}
