#pragma once
// http::parse_request_head: an HTTP/1.1 request head (RFC 9112) from bytes to a request_head.
//
// Pure: no I/O, no allocation. The server parses in its reader's buffer (parse_request_prefix
// finds the end of the head as it goes) and gets back views into those bytes, valid while they
// are.
// Strict by default: anything RFC 9112 lets a server reject is rejected, with the status to
// answer before closing the connection, because every leniency between a proxy and a server is
// a request-smuggling vector (two parties reading different message boundaries):
//   400  syntax: a request line that is not exactly "method SP target SP version CRLF"; a line
//        end that is not CRLF (bare CR, and bare LF too: RFC 9112 §2.2 lets a recipient accept
//        it, we do not, so a head has one terminator and find_head_end one rule); obs-fold (a
//        field line starting with SP/HTAB); whitespace between field name and colon; a byte
//        outside token in a method or field name; a control byte in a target or value; both
//        Content-Length and Transfer-Encoding; Content-Length that is not one plain number
//        (a list "5, 6", even "5, 5", a second Content-Length line, a sign, an overflow);
//        chunked not the last coding or given twice; Transfer-Encoding in HTTP/1.0; no Host in
//        HTTP/1.1, more than one Host line, or a Host value with bytes no authority has.
//   417  an Expect other than 100-continue (RFC 9110 §10.1.1).
//   431  more than max_headers field lines, or a head longer than max_head_bytes.
//   501  a transfer coding other than chunked (we decode no gzip or deflate).
//   505  a version other than HTTP/1.0 or HTTP/1.1.
#include <coring/http/header.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coring::http {

// A request head longer than this is answered 431: it bounds what the reader buffers per
// connection before a request is known (nginx's large_client_header_buffers default is 8 KiB).
inline constexpr std::size_t max_head_bytes = 8192;

struct request_head {
    std::string_view method;
    std::string_view target;  // as sent: origin-form "/a?b", absolute-form "http://h/a?b", or "*"
    std::string_view path;    // target's path, before '?', still %-encoded ("*" for asterisk-form)
    std::string_view query;   // after '?', without it; empty when none
    int minor_version = 1;    // HTTP/1.<minor_version>: 0 or 1
    std::array<header, max_headers> headers;
    std::size_t header_count = 0;
    body_framing framing = body_framing::none;
    std::uint64_t content_length = 0;  // the body's length when framing == length
    bool keep_alive = true;            // 1.1: unless Connection: close; 1.0: only with keep-alive
    bool expect_continue = false;      // Expect: 100-continue (ignored in 1.0, RFC 9110 §10.1.1)
    bool upgrade_websocket = false;    // Upgrade: websocket and a Connection: upgrade token

    // The first field with this name, compared case-insensitively; empty when none.
    std::string_view find(std::string_view name) const noexcept {
        return find_header({headers.data(), header_count}, name);
    }
};

// Parses `head`, the whole head through its blank line ("\r\n\r\n" included). Returns 0 and
// fills `out` with views into `head`, or the status to answer before closing (see the top).
int parse_request_head(std::string_view head, request_head& out) noexcept;

// What parse_request_prefix returns while the head is not all there.
inline constexpr int head_incomplete = -1;

// For a server parsing in its read buffer, in one pass: the head at the start of `bytes`, which
// may hold less (the rest still on its way) or more (pipelined requests behind it). Returns 0
// with `length` set to the head's size (blank line included); head_incomplete when `bytes` ends
// inside the head and nothing wrong was seen so far (431 once that is max_head_bytes or more);
// or the status to answer, as parse_request_head, as soon as the bytes so far show it.
int parse_request_prefix(std::string_view bytes, request_head& out, std::size_t& length) noexcept;

}  // namespace coring::http
