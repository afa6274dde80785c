#include <coring/ws/handshake.hpp>

#include <array>
#include <openssl/evp.h>
#include <stdexcept>
#include <sys/random.h>

namespace coring::ws {

namespace {

// Section 1.3: the server appends this to the client's key before hashing, so a 101 answer
// proves the server read the WebSocket request (and is not a cache or a confused HTTP server).
constexpr std::string_view handshake_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const unsigned char* data, int size) {
    std::string out(static_cast<std::size_t>(4 * ((size + 2) / 3)) + 1, '\0');  // + the NUL it writes
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, size);
    out.resize(static_cast<std::size_t>(n));
    return out;
}

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::string accept_key(std::string_view sec_websocket_key) {
    std::string text;
    text.reserve(sec_websocket_key.size() + handshake_guid.size());
    text.append(sec_websocket_key).append(handshake_guid);
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest;
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha1(), nullptr) != 1)
        throw std::runtime_error("EVP_Digest (SHA-1) failed");  // only when libcrypto itself is broken
    return base64(digest.data(), static_cast<int>(size));
}

bool has_token(std::string_view list, std::string_view token) noexcept {
    while (!list.empty()) {
        const auto comma = list.find(',');
        if (equal_ignoring_case(trim(list.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

bool is_valid_key(std::string_view key) noexcept {
    // 16 bytes take 22 base64 digits and "==". The last digit carries 2 bits of data and 4 of
    // padding, which must be zero (canonical), so it is one of A, Q, g, w.
    if (key.size() != 24 || key.substr(22) != "==") return false;
    for (std::size_t i = 0; i < 22; ++i)
        if (base64_alphabet.find(key[i]) == std::string_view::npos) return false;
    return (base64_alphabet.find(key[21]) & 0x0F) == 0;
}

upgrade_error check_upgrade(const upgrade_request& r) noexcept {
    if (r.method != "GET") return upgrade_error::not_get;
    if (!has_token(r.upgrade, "websocket")) return upgrade_error::no_upgrade_token;
    if (!has_token(r.connection, "upgrade")) return upgrade_error::no_connection_upgrade;
    if (trim(r.version) != "13") return upgrade_error::bad_version;
    if (!is_valid_key(trim(r.key))) return upgrade_error::bad_key;
    return upgrade_error::none;
}

int status_for(upgrade_error e) noexcept {
    switch (e) {
    case upgrade_error::none: return 101;
    case upgrade_error::bad_version: return 426;
    default: return 400;
    }
}

std::string_view describe(upgrade_error e) noexcept {
    switch (e) {
    case upgrade_error::none: return "a valid WebSocket upgrade";
    case upgrade_error::not_get: return "a WebSocket upgrade must be a GET";
    case upgrade_error::no_upgrade_token: return "Upgrade does not list websocket";
    case upgrade_error::no_connection_upgrade: return "Connection does not list Upgrade";
    case upgrade_error::bad_version: return "Sec-WebSocket-Version is not 13";
    case upgrade_error::bad_key: return "Sec-WebSocket-Key is not 16 bytes in base64";
    }
    return "unknown upgrade error";
}

std::string accept_response(std::string_view sec_websocket_key) {
    std::string head =
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ";
    head += accept_key(trim(sec_websocket_key));
    head += "\r\n\r\n";
    return head;
}

std::string make_client_key() {
    std::array<unsigned char, 16> nonce;
    if (getrandom(nonce.data(), nonce.size(), 0) != static_cast<ssize_t>(nonce.size()))
        throw std::runtime_error("getrandom for a Sec-WebSocket-Key failed");
    return base64(nonce.data(), static_cast<int>(nonce.size()));
}

std::string client_request(std::string_view host, std::string_view target, std::string_view key) {
    std::string head;
    head.reserve(160 + host.size() + target.size());
    head.append("GET ").append(target).append(" HTTP/1.1\r\nHost: ").append(host);
    head.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    head.append(key).append("\r\n\r\n");
    return head;
}

std::string_view check_response(std::string_view head, std::string_view key) {
    // Status line: "HTTP/1.1 101" then a space and a reason, or the line's end.
    auto eol = head.find("\r\n");
    if (eol == std::string_view::npos) return "response head without a line end";
    const std::string_view status = head.substr(0, eol);
    if (!status.starts_with("HTTP/1.1 101") || (status.size() > 12 && status[12] != ' '))
        return "the server did not answer 101 Switching Protocols";
    bool upgrade = false, connection = false, accepted = false;
    head.remove_prefix(eol + 2);
    while (true) {
        eol = head.find("\r\n");
        if (eol == std::string_view::npos) return "response head does not end in an empty line";
        const std::string_view line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        if (line.empty()) break;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return "response header line without a name";
        const std::string_view name = line.substr(0, colon);
        if (name.find_first_of(" \t") != std::string_view::npos) return "whitespace in a response header name";
        const std::string_view value = trim(line.substr(colon + 1));
        if (equal_ignoring_case(name, "Upgrade")) upgrade = upgrade || has_token(value, "websocket");
        else if (equal_ignoring_case(name, "Connection")) connection = connection || has_token(value, "upgrade");
        else if (equal_ignoring_case(name, "Sec-WebSocket-Accept")) {
            if (accepted || value != accept_key(key)) return "Sec-WebSocket-Accept does not match the key";
            accepted = true;
        } else if (equal_ignoring_case(name, "Sec-WebSocket-Extensions") ||
                   equal_ignoring_case(name, "Sec-WebSocket-Protocol")) {
            return "the server chose an extension or subprotocol that was not offered";  // section 4.1
        }
    }
    if (!upgrade) return "Upgrade: websocket missing from the response";
    if (!connection) return "Connection: Upgrade missing from the response";
    if (!accepted) return "Sec-WebSocket-Accept missing from the response";
    if (!head.empty()) return "bytes after the response head";  // the caller passes the head alone
    return {};
}

}  // namespace coring::ws
