-- The Idempotency-Key an order was placed under (null without one). The sold-out gate holds
-- the (buyer, key) pairs read from here, so only a keyed retry of an order that exists passes
-- it (app/src/goods/soldout.rs); a buyer's new order is refused from Redis like anyone's.
-- A nullable column without a default: a catalogue change, no table rewrite.
alter table orders add column idempotency_key text;
