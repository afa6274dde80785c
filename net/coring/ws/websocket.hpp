#pragma once
// websocket: one WebSocket connection (RFC 6455) over a tcp_stream, either side.
//
// Who owns what: the tcp_stream (and a buffered_reader passed in) belong to the caller and must
// outlive the websocket; the websocket reads only through its reader, and writes the stream
// only under its own write lock, so a pong or a close it sends by itself never interleaves with
// a frame of the application's. What a peer can make it hold is bounded:
// - a message being reassembled: options::max_message bytes (more: close 1009);
// - a frame head in the reader's spill (14 bytes at most: payloads are consumed as they arrive);
// - one control payload (125 bytes), answered before the next frame is read, so a peer that
//   floods pings and never reads stalls only its own receive() (behind the write).
// Sends copy nothing on the server side (head and payload go out in one gather send); a client
// copies the payload once, to mask it (section 5.3 forbids sending it unmasked).
//
// Closing (section 7): receive() answers the peer's close frame with the same code, closes the
// TCP connection and returns an error of the websocket category carrying that code (1005 for a
// close without one; 1006 when the stream ended without a close frame). A protocol violation by
// the peer closes with 1002 (1007 for bad UTF-8, 1009 for an oversized message) and receive()
// returns that code. close() sends a close frame, waits (up to options::close_timeout) for the
// peer's, then closes the TCP connection.
#include <coring/reader.hpp>
#include <coring/result.hpp>
#include <coring/sync.hpp>
#include <coring/task.hpp>
#include <coring/tcp.hpp>
#include <coring/ws/frame.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coring::ws {

struct message {
    opcode op = opcode::binary;  // text or binary
    std::string payload;         // unmasked; valid UTF-8 when op is text

    std::string_view text() const noexcept { return payload; }
    std::span<const std::byte> bytes() const noexcept { return std::as_bytes(std::span{payload.data(), payload.size()}); }
};

struct options {
    // The largest reassembled message accepted (more: close 1009). A bound on the memory a peer
    // can make one connection hold.
    std::size_t max_message = 1 << 20;
    // How long close() waits for the peer's close frame, and any close this side sends waits
    // for the stream to take it.
    std::chrono::milliseconds close_timeout{5000};
};

class websocket {
public:
    // Reads through a reader of its own: for a stream with nothing buffered yet.
    websocket(tcp_stream& stream, role side, options opts = {});
    // Goes on reading through `reader`, which may already hold the first frames (a client that
    // sent them right behind its upgrade request, or a server's behind its 101).
    websocket(tcp_stream& stream, buffered_reader& reader, role side, options opts = {});
    websocket(const websocket&) = delete;
    websocket& operator=(const websocket&) = delete;

    // Client side: sends the upgrade request for `target` on `host` and checks the 101 answer.
    // protocol_error when the server refuses or answers wrongly (handshake_failure() says why).
    [[nodiscard]] task<result<void>> handshake(std::string_view host, std::string_view target);
    std::string_view handshake_failure() const noexcept { return handshake_failure_; }

    // The next whole message (fragments reassembled). Pings are answered and pongs dropped
    // meanwhile. Once the connection closes: an error of the websocket category (the close
    // code; see above), or the stream's own error (connection_reset, operation_canceled...).
    // One receive() at a time.
    [[nodiscard]] task<result<message>> receive();

    [[nodiscard]] task<result<void>> send_text(std::string_view text);
    [[nodiscard]] task<result<void>> send_binary(std::span<const std::byte> bytes);
    // A message in pieces: the first call with text or binary, then opcode::continuation;
    // `fin` on the last. Nothing else of the application's may go in between (control frames
    // from this side may).
    [[nodiscard]] task<result<void>> send_fragment(opcode op, std::span<const std::byte> bytes, bool fin);
    // At most 125 bytes (more: message_size).
    [[nodiscard]] task<result<void>> ping(std::span<const std::byte> payload = {});
    // Sends a close frame (code as in is_sendable; reason cut to fit 123 bytes), waits for the
    // peer's (bounded by options::close_timeout), then closes the stream.
    [[nodiscard]] task<result<void>> close(close_code code = close_code::normal, std::string_view reason = {});

    bool is_open() const noexcept { return !closed_; }
    // Once closed: the code the connection closed with, and the peer's reason (if it sent one).
    close_code code() const noexcept { return close_code_; }
    std::string_view close_reason() const noexcept { return close_reason_; }
    // For a sender of frames it builds itself (a pub/sub fan-out sends prebuilt frames): it
    // writes the stream only while holding write_lock(), as the websocket's own sends do, so
    // frames never interleave. Server side only (a client must mask each frame).
    tcp_stream& stream() noexcept { return stream_; }
    mutex& write_lock() noexcept { return write_lock_; }
    // Pongs received (answers to ping(), or unsolicited ones).
    std::size_t pongs() const noexcept { return pongs_; }

private:
    task<result<void>> send_frame(bool fin, opcode op, std::span<const std::byte> payload);
    task<result<frame_head>> read_head();
    // Appends the frame's payload to `into`, unmasked (and checked, for text) as it arrives.
    task<result<void>> read_payload(const frame_head& h, std::string& into, utf8_validator* text);
    task<result<void>> on_control(const frame_head& h);
    // Sends a close frame with `code` (unless one went already), closes the stream, and returns
    // the error receive() reports.
    task<std::error_code> fail(close_code code, std::string_view why);
    task<> close_stream();
    std::error_code closed_error() const noexcept { return make_error_code(close_code_); }

    tcp_stream& stream_;
    std::optional<buffered_reader> own_reader_;
    buffered_reader& reader_;
    role side_;
    options opts_;
    mutex write_lock_;          // one frame on the stream at a time (socket_base allows one writer)
    std::vector<std::byte> masked_;  // a client's masked copy of the payload being sent
    fragment_tracker fragments_;
    bool receiving_ = false;    // a receive() is running: close() waits for it to see the close
    event peer_closed_;         // set when the peer's close frame (or the end of the stream) arrives
    bool close_sent_ = false;
    bool closed_ = false;
    close_code close_code_ = close_code::abnormal;
    std::string close_reason_;
    std::string handshake_failure_;
    std::size_t pongs_ = 0;
};

}  // namespace coring::ws
