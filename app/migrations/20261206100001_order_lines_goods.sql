-- The buyers of one goods item, read when its stock reaches 0 to close the sold-out gate
-- with every buyer in it (app/src/orders/soldout.rs).
create index order_lines_goods_idx on order_lines (goods_id, order_id);
