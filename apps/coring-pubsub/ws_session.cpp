// coring-pubsub over WebSocket (--http): GET / serves a demo page (a live ticker of one
// channel), /ws takes JSON commands (ws_command.hpp) and sends each message as a text frame
// {"channel":"...","data":"..."} (with "pattern" for a pattern subscription), serialized once
// per core by the hub and shared, like the RESP subscribers' frames. Acknowledgements:
// {"subscribed":"news","count":1} (unsubscribed, psubscribed, punsubscribed alike); errors:
// {"error":"..."}, and the connection stays open. A publish gets no reply; one that travels to
// other cores or the bus is counted until they took it, and the session reads nothing more
// while 4,096 are (limits::max_unanswered), as for a RESP publisher.
#include "pubsub_app.hpp"
#include "ws_command.hpp"

#include <coring/http/server.hpp>
#include <coring/ws/websocket.hpp>

#include <array>

namespace coring::apps::pubsub_detail {

namespace {

// The demo: subscribes to ?channel= (default "ticker") and shows the newest messages.
constexpr std::string_view demo_page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coring-pubsub ticker</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; } #status { color: #666; } #count { font-weight: bold; }
ol { font-family: ui-monospace, monospace; padding-left: 2em; }
</style></head>
<body>
<h1>coring-pubsub: channel <code id="channel"></code></h1>
<p id="status">connecting...</p>
<p>messages received: <span id="count">0</span></p>
<ol id="messages" reversed></ol>
<script>
const channel = new URLSearchParams(location.search).get("channel") || "ticker";
document.getElementById("channel").textContent = channel;
const list = document.getElementById("messages");
let count = 0;
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => ws.send(JSON.stringify({sub: channel}));
ws.onclose = () => { document.getElementById("status").textContent = "closed"; };
ws.onmessage = (event) => {
  const m = JSON.parse(event.data);
  if (m.subscribed !== undefined) { document.getElementById("status").textContent = "subscribed"; return; }
  if (m.data === undefined) return;
  document.getElementById("count").textContent = ++count;
  const item = document.createElement("li");
  item.textContent = m.data;
  list.prepend(item);
  while (list.children.length > 20) list.lastChild.remove();
};
</script>
</body></html>
)html";

// One JSON reply as a text frame, queued in order with the messages.
void reply_json(pubsub::connection& conn, std::string_view json) {
    conn.reply_with([json](std::string& out) {
        std::array<std::byte, ws::max_head_size> head;
        const std::size_t n = ws::write_head(head, true, ws::opcode::text, json.size());
        out.append(reinterpret_cast<const char*>(head.data()), n);
        out.append(json);
    });
}

void reply_ack(pubsub::connection& conn, std::string_view what, std::string_view topic, std::size_t count) {
    std::string json = "{\"";
    json += what;
    json += "\":\"";
    pubsub::append_json_string(json, topic);
    json += "\",\"count\":" + std::to_string(count) + "}";
    reply_json(conn, json);
}

task<> ws_session(ws::websocket& socket, pubsub::hub& hub) {
    pubsub::connection conn{hub, socket.stream(), pubsub::format::ws_json};
    conn.share_stream(socket.write_lock());  // the websocket answers pings and closes itself
    task_group writer;
    writer.spawn(conn.write_loop());
    ws_command cmd;
    for (;;) {
        auto message = co_await socket.receive();
        if (!message) break;  // closed (the handshake is done), reset, cut, or a protocol error
        if (message->op != ws::opcode::text) {
            reply_json(conn, R"({"error":"send JSON in text messages"})");
            continue;
        }
        if (const std::string why = parse_ws_command(message->text(), cmd); !why.empty()) {
            std::string json = R"({"error":")";
            pubsub::append_json_string(json, why);
            reply_json(conn, json + "\"}");
            continue;
        }
        const bool pattern = cmd.kind == ws_command::psubscribe || cmd.kind == ws_command::punsubscribe;
        switch (cmd.kind) {
        case ws_command::subscribe:
        case ws_command::psubscribe: {
            const auto count = co_await conn.subscribe(cmd.topic, pattern);
            if (!count) {
                reply_json(conn, "{\"error\":\"max subscriptions per connection reached (" +
                                     std::to_string(hub.output_limits().max_subscriptions) + ")\"}");
                break;
            }
            reply_ack(conn, pattern ? "psubscribed" : "subscribed", cmd.topic, *count);
            break;
        }
        case ws_command::unsubscribe:
        case ws_command::punsubscribe:
            reply_ack(conn, pattern ? "punsubscribed" : "unsubscribed", cmd.topic, conn.unsubscribe(cmd.topic, pattern));
            break;
        case ws_command::publish: conn.publish(cmd.topic, cmd.data); break;
        }
        if (conn.crowded()) {
            auto room = co_await conn.room();
            if (!room) break;
        }
    }
    conn.close_output();
    co_await writer.join();
}

}  // namespace

task<> web_server(tcp_listener listener, pubsub::hub& hub, const pubsub_options& opts) {
    http::routes routes;
    routes.get("/", [](http::request&) -> task<http::response> {
        http::response page;
        page.content_type = "text/html; charset=utf-8";
        page.body = std::string{demo_page};
        co_return page;
    });
    routes.websocket(
        "/ws", [&hub](http::request&, ws::websocket& socket) { return ws_session(socket, hub); }, opts.max_message);
    const http::server_options server;
    co_await http::serve(std::move(listener), routes, server);
}

}  // namespace coring::apps::pubsub_detail
