-- A goods waiting-room pass (one admitted session: queue, user and the session's expiry,
-- fixed at admission) pays for one order (app/src/orders/rules.rs::pass_unused). The row is
-- written in the order's transaction; the key makes a second order with the pass impossible.
create table queue_pass_orders (
    queue_id           text   not null,
    user_id            bigint not null references users,
    session_expires_ms bigint not null,
    order_id           bigint not null references orders on delete cascade,
    created_at         timestamptz not null default now(),
    primary key (queue_id, user_id, session_expires_ms)
);
