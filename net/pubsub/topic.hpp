#pragma once
// The hub's structures that both halves of the engine touch (hub.cpp: topics, interest and
// cross-core batches; connection.cpp: a connection's subscriptions and output). Private to
// net/pubsub.
#include <coring/pubsub/hub.hpp>

#include <cstddef>
#include <string>

namespace coring::pubsub {

// A channel or pattern with subscribers on this core: an intrusive list of them.
struct hub::topic {
    std::string name;
    connection::subscription* head = nullptr;
    std::size_t count = 0;
    bool announced = false;  // every core knows this core has subscribers of it
    event announced_event;
};

// One (connection, topic) pair: a node in the topic's list, and in the connection's sorted vector.
struct connection::subscription {
    connection* who;
    hub::topic* topic;
    bool pattern;
    // Its SUBSCRIBE is answered: until then it gets no messages, which would go out ahead of
    // the reply (a client's subscribe call takes the first thing it reads as its answer).
    bool confirmed = false;
    subscription* prev = nullptr;
    subscription* next = nullptr;
};

}  // namespace coring::pubsub
