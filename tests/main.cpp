// The test runner: Catch2's main, after raising RLIMIT_NOFILE to its hard limit (a test whose
// client and server share this process holds two fds per connection).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <sys/resource.h>

int main(int argc, char** argv) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
    }
    return Catch::Session().run(argc, argv);
}
