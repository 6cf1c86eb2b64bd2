-- Room on each page for the stored response. A batch inserts its claims (~110 bytes a row)
-- and, in the same transaction, updates each with its status and response (~320 bytes).
-- With full pages that update lands on another page: a new entry in both indexes for every
-- keyed request, and the dead version left behind. With 70 % of each page left free, most
-- updates stay on their page (heap-only tuples, no index writes). Affects new pages only: no
-- table rewrite.
alter table idempotency_keys set (fillfactor = 30);
