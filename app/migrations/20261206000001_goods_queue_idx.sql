-- A join to a waiting room nobody configured checks whether goods reference the queue id
-- (`queue::registry`); this keeps that check an index probe whatever the catalog's size.
create index goods_queue_idx on goods (queue_id) where queue_id is not null and deleted_at is null;
