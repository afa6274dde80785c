#pragma once
// remote_call: the awaitable behind core::submit_to. Included at the end of core.hpp.
//
// Who owns what: the whole call (the mail node, fn, the result slot) lives in the caller's
// frame, which stays suspended until the reply is delivered on the caller's own core; the
// target core only borrows it between taking the request from its inbox and posting the reply.
#include <coring/core.hpp>
#include <coring/log.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>

namespace coring {

namespace detail {

template <class T>
struct unwrap_task {
    using type = T;
    static constexpr bool is_task = false;
};
template <class T>
struct unwrap_task<task<T>> {
    using type = T;
    static constexpr bool is_task = true;
};

// The awaitable behind submit_to: one mail, sent to core k as the request and back as the
// reply. It lives in the caller's frame, which stays suspended until the reply is delivered, so
// everything the target touches outlives its use.
template <class Fn>
class remote_call {
    using returned = std::invoke_result_t<Fn&>;

public:
    using value_type = typename unwrap_task<returned>::type;

private:
    using slot_type = std::conditional_t<std::is_void_v<value_type>, bool, value_type>;

public:
    remote_call(core& origin, unsigned to, Fn fn) : origin_{origin}, fn_{std::move(fn)} {
        mail_.context = this;
        mail_.to = to;
    }
    remote_call(const remote_call&) = delete;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        waiter_ = h;
        ctx_ = origin_.current_task();
        mail_.deliver = &on_target;
        origin_.post(mail_);
    }
    value_type await_resume() {
        if (error_) std::rethrow_exception(error_);
        if constexpr (!std::is_void_v<value_type>) return std::move(*value_);
    }

private:
    static void on_target(mail& m) noexcept {
        auto* self = static_cast<remote_call*>(m.context);
        if constexpr (unwrap_task<returned>::is_task) {
            core::current().spawn(run_async(self));
        } else {
            try {
                if constexpr (std::is_void_v<value_type>) {
                    self->fn_();
                    self->value_.emplace(true);
                } else {
                    self->value_.emplace(self->fn_());
                }
            } catch (...) {
                self->error_ = std::current_exception();
            }
            self->reply();
        }
    }
    static task<> run_async(remote_call* self) {
        try {
            if constexpr (std::is_void_v<value_type>) {
                co_await self->fn_();
                self->value_.emplace(true);
            } else {
                self->value_.emplace(co_await self->fn_());
            }
        } catch (...) {
            self->error_ = std::current_exception();
        }
        self->reply();
    }
    void reply() noexcept {
        mail_.deliver = &on_origin;
        mail_.to = origin_.id();
        core::current().post(mail_);
    }
    static void on_origin(mail& m) noexcept {
        auto* self = static_cast<remote_call*>(m.context);
        self->origin_.resume_later(self->waiter_, self->ctx_);
    }

    mail mail_;
    core& origin_;
    Fn fn_;
    std::coroutine_handle<> waiter_;
    task_context* ctx_ = nullptr;
    std::optional<slot_type> value_;
    std::exception_ptr error_;
};

// post_to's message: nobody waits, so no frame can hold the callable; it travels in this heap
// node, which the target core frees once fn has run.
template <class Fn>
struct posted_call {
    mail m;
    Fn fn;

    static void on_target(mail& m) noexcept {
        std::unique_ptr<posted_call> self{static_cast<posted_call*>(m.context)};
        try {
            if constexpr (std::is_invocable_r_v<task<>, Fn&>) core::current().spawn(std::move(self->fn));
            else self->fn();
        } catch (const std::exception& e) {
            log("core {}: post_to: {}", core::current().id(), e.what());
        } catch (...) {
            log("core {}: post_to: an unknown exception", core::current().id());
        }
    }
};

}  // namespace detail

template <class Fn>
void core::post_to(unsigned k, Fn fn) {
    require_core(k, "post_to");
    auto* p = new detail::posted_call<Fn>{{}, std::move(fn)};
    p->m.context = p;
    p->m.to = k;
    p->m.deliver = &detail::posted_call<Fn>::on_target;
    post(p->m);
}

template <class Fn>
detail::remote_call<std::decay_t<Fn>> core::submit_to(unsigned k, Fn&& fn) {
    CORING_CHECK_CALLABLE(Fn);
    require_core(k, "submit_to");
    return detail::remote_call<std::decay_t<Fn>>{*this, k, std::decay_t<Fn>(std::forward<Fn>(fn))};
}

}  // namespace coring
