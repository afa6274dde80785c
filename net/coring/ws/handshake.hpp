#pragma once
// The WebSocket opening handshake (RFC 6455 section 4), both sides, as text in and text out.
// The HTTP part (reading the request, routing, answering an error) belongs to the HTTP server;
// this checks the fields that make a request an upgrade and writes the 101 response. For the
// client side (tests, the load generator) it makes the key, writes the GET request and checks
// the server's 101 head.
#include <cstdint>
#include <string>
#include <string_view>

namespace coring::ws {

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC's fixed GUID)).
std::string accept_key(std::string_view sec_websocket_key);

// The header values of a request that asks to upgrade ("" where a header is absent). A header
// sent more than once arrives as one comma-joined value, as HTTP allows for lists.
struct upgrade_request {
    std::string_view method;
    std::string_view upgrade;     // must list the token "websocket"
    std::string_view connection;  // must list the token "Upgrade"
    std::string_view version;     // Sec-WebSocket-Version: must be 13
    std::string_view key;         // Sec-WebSocket-Key: 16 bytes in base64 (24 characters)
};

// Fills upgrade_request from a lookup, find(name) -> std::string_view ("" when absent), so any
// header store works.
template <class Find>
upgrade_request upgrade_request_from(std::string_view method, Find&& find) {
    return {method, find("Upgrade"), find("Connection"), find("Sec-WebSocket-Version"), find("Sec-WebSocket-Key")};
}

enum class upgrade_error { none, not_get, no_upgrade_token, no_connection_upgrade, bad_version, bad_key };

upgrade_error check_upgrade(const upgrade_request& r) noexcept;
// The HTTP status to refuse with: 426 Upgrade Required for another version (the response must
// then carry `Sec-WebSocket-Version: 13`, section 4.4), 400 Bad Request otherwise.
int status_for(upgrade_error e) noexcept;
std::string_view describe(upgrade_error e) noexcept;

// The whole 101 Switching Protocols head (ending in the empty line) for an accepted request.
std::string accept_response(std::string_view sec_websocket_key);

// Whether `list` (a comma-separated header value) holds `token`, compared case-insensitively.
bool has_token(std::string_view list, std::string_view token) noexcept;
// Whether `key` is 16 bytes in canonical base64.
bool is_valid_key(std::string_view key) noexcept;

// Client side. A fresh Sec-WebSocket-Key (16 random bytes from getrandom, in base64).
std::string make_client_key();
// The GET request head for `target` (a path such as "/ws/echo") on `host` ("host:port").
std::string client_request(std::string_view host, std::string_view target, std::string_view key);
// Checks a server's response head (status line through the empty line) to a request made with
// `key`: "" when it accepts the upgrade, otherwise what is wrong.
std::string_view check_response(std::string_view head, std::string_view key);

}  // namespace coring::ws
