#pragma once
// Everything a coring program needs, in one include.
#include <coring/address.hpp>
#include <coring/channel.hpp>
#include <coring/core.hpp>
#include <coring/file.hpp>
#include <coring/result.hpp>
#include <coring/run.hpp>
#include <coring/reader.hpp>
#include <coring/readiness.hpp>
#include <coring/sharded.hpp>
#include <coring/sync.hpp>
#include <coring/task.hpp>
#include <coring/task_group.hpp>
#include <coring/tcp.hpp>
#include <coring/timer.hpp>
#include <coring/when.hpp>
#include <coring/writer.hpp>
