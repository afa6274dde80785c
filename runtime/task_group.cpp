#include <coring/log.hpp>
#include <coring/task_group.hpp>

#include <cstdlib>

namespace coring {

task_group::~task_group() {
    if (count_ != 0) {  // children would tell a dead group that they ended
        log("task_group destroyed with {} child task(s) still running: co_await join() first", count_);
        std::abort();
    }
}

void task_group::spawn(task<> t) { core::current().spawn(std::move(t), *this); }

void task_group::spawn_independent(task<> t) { core::current().spawn(std::move(t), *this, false); }

void task_group::child_started(detail::task_context& ctx) noexcept {
    core& here = core::current();
    if (count_ == 0) {
        home_ = &here;
        here.link_live(anchor_);
    } else if (home_ != &here) {  // the anchor is on the other core's list: it would miss these
        log("task_group: children on two cores at once (core {} and core {}): one group per core", home_->id(), here.id());
        std::abort();
    }
    ++count_;
    ctx.group = this;
    detail::push_front(children_, ctx);
}

void task_group::child_ended(detail::task_context& ctx) noexcept {
    detail::unlink(children_, ctx);
    if (--count_ == 0) home_->unlink_live(anchor_);
    if (count_ != 0) return;
    for (join_awaiter* j = std::exchange(joiners_, nullptr); j;) {
        join_awaiter* next = j->next_;  // read first: completing may let its frame go
        j->op_.res = 0;
        core::current().complete_join(j->op_);
        j = next;
    }
}

void task_group::cancel() noexcept {
    core& c = core::current();
    for (auto* ctx = children_; ctx; ctx = ctx->next) c.cancel_task(*ctx);
}

void task_group::join_awaiter::await_suspend(std::coroutine_handle<> h) noexcept {
    op_.waiter = h;
    op_.buf = &group_;
    next_ = group_.joiners_;
    group_.joiners_ = this;
    core::current().start(op_);  // a join op: parked in the group, cancellable like any op
}

task<> task_group::join() {
    if (count_ == 0) co_return;
    co_await join_awaiter{*this};
}

task<> task_group::cancel_and_join() {
    cancel();
    co_await join();
}

}  // namespace coring
