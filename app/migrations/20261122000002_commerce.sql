-- Commerce core: wallets with their ledger, idempotency records, goods, carts, orders,
-- first-come-first-served coupons.

create table wallets (
    user_id    bigint primary key references users on delete cascade,
    balance    bigint not null default 0,
    updated_at timestamptz not null default now(),
    constraint wallets_balance_non_negative check (balance >= 0),
    -- far above any real balance, far below i64 overflow
    constraint wallets_balance_max check (balance <= 1000000000000000)
);

-- The record of every balance change; wallets.balance always equals the sum of amount.
create table wallet_ledger (
    ledger_id     bigint generated always as identity primary key,
    user_id       bigint not null references users on delete cascade,
    kind          text not null,
    amount        bigint not null,
    balance_after bigint not null,
    reference_id  bigint,
    created_at    timestamptz not null default now(),
    constraint wallet_ledger_kind_known check (kind in ('charge', 'order_payment', 'order_refund', 'seat_payment', 'seat_refund')),
    constraint wallet_ledger_amount_nonzero check (amount <> 0)
);
create index wallet_ledger_user_idx on wallet_ledger (user_id, ledger_id desc);

-- Idempotency-Key records (IETF draft semantics), scoped per user.
create table idempotency_keys (
    user_id      bigint not null references users on delete cascade,
    key          text not null,
    fingerprint  bytea not null,
    -- null while the first request is still being processed
    status       smallint,
    response     jsonb,
    locked_until timestamptz not null,
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    primary key (user_id, key)
);
create index idempotency_keys_expires_idx on idempotency_keys (expires_at);

create table goods (
    goods_id       bigint generated always as identity primary key,
    seller_id      bigint not null references users,
    name           text not null,
    description    text not null default '',
    price          bigint not null,
    stock          integer not null,
    category       text,
    image_url      text,
    sale_starts_at timestamptz,
    queue_id       text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    deleted_at     timestamptz,
    constraint goods_price_non_negative check (price >= 0),
    constraint goods_stock_non_negative check (stock >= 0)
);
create index goods_newest_idx on goods (goods_id desc) where deleted_at is null;
create index goods_seller_idx on goods (seller_id);
create trigger goods_set_updated_at before update on goods
    for each row execute function set_updated_at();

create table cart_items (
    user_id    bigint not null references users on delete cascade,
    goods_id   bigint not null references goods,
    quantity   integer not null,
    added_at   timestamptz not null default now(),
    primary key (user_id, goods_id),
    constraint cart_items_quantity_positive check (quantity > 0)
);

create table coupon_campaigns (
    campaign_id      bigint generated always as identity primary key,
    name             text not null,
    discount_amount  bigint,
    discount_percent integer,
    total_quantity   integer not null,
    per_user_limit   integer not null default 1,
    starts_at        timestamptz not null,
    ends_at          timestamptz not null,
    -- persisted coupons; the database enforces the cap whatever Redis says
    issued           integer not null default 0,
    created_at       timestamptz not null default now(),
    constraint coupon_campaigns_one_discount check ((discount_amount is null) <> (discount_percent is null)),
    constraint coupon_campaigns_amount_positive check (discount_amount is null or discount_amount > 0),
    constraint coupon_campaigns_percent_range check (discount_percent is null or discount_percent between 1 and 100),
    constraint coupon_campaigns_quantity_positive check (total_quantity > 0),
    constraint coupon_campaigns_window check (ends_at > starts_at),
    constraint coupon_campaigns_issued_cap check (issued between 0 and total_quantity)
);

create table orders (
    order_id     bigint generated always as identity primary key,
    user_id      bigint not null references users,
    status       text not null default 'paid',
    subtotal     bigint not null,
    discount     bigint not null default 0,
    total        bigint not null,
    coupon_id    bigint,
    created_at   timestamptz not null default now(),
    cancelled_at timestamptz,
    constraint orders_status_known check (status in ('paid', 'cancelled')),
    constraint orders_amounts check (subtotal >= 0 and discount >= 0 and total = subtotal - discount and total >= 0)
);
create index orders_user_idx on orders (user_id, order_id desc);

create table order_lines (
    order_id   bigint not null references orders on delete cascade,
    goods_id   bigint not null references goods,
    quantity   integer not null,
    unit_price bigint not null,
    primary key (order_id, goods_id),
    constraint order_lines_quantity_positive check (quantity > 0)
);

create table coupons (
    coupon_id   bigint generated always as identity primary key,
    campaign_id bigint not null references coupon_campaigns,
    user_id     bigint not null references users,
    issued_at   timestamptz not null,
    used_at     timestamptz,
    order_id    bigint references orders,
    constraint coupons_campaign_user_key unique (campaign_id, user_id)
);
create index coupons_user_idx on coupons (user_id);
alter table orders add constraint orders_coupon_fk foreign key (coupon_id) references coupons;
