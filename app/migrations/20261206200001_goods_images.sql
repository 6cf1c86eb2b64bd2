-- Goods images (#16): the original is an object in the image store (a local folder or S3) under
-- `object_key`; its thumbnail is made off the request path by `images::thumbnails`, which claims
-- pending rows (`thumb_claimed_at`, skip locked) and fills `thumb_key`/`thumb_etag`.
-- Rows go with their goods: a soft delete deletes them (and their objects) in the app, a hard
-- delete cascades.
create table goods_images (
    image_id          uuid primary key,
    goods_id          bigint not null references goods on delete cascade,
    content_type      text not null,
    byte_size         integer not null,
    width             integer not null,
    height            integer not null,
    etag              text not null,
    object_key        text not null unique,
    thumb_state       text not null default 'pending',
    thumb_key         text,
    thumb_etag        text,
    thumb_attempts    integer not null default 0,
    thumb_claimed_at  timestamptz,
    created_at        timestamptz not null default now(),
    constraint goods_images_type check (content_type in ('image/jpeg', 'image/png', 'image/webp')),
    constraint goods_images_size check (byte_size > 0 and width > 0 and height > 0),
    constraint goods_images_thumb_state check (thumb_state in ('pending', 'ready', 'failed')),
    constraint goods_images_thumb_ready check ((thumb_state = 'ready') = (thumb_key is not null and thumb_etag is not null))
);
create index goods_images_goods_idx on goods_images (goods_id, created_at, image_id);
create index goods_images_pending_idx on goods_images (created_at) where thumb_state = 'pending';
