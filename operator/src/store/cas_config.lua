-- Compare-and-set of the runtime document, then publish its version.
-- KEYS[1]  the document key (<prefix>config)
-- ARGV[1]  the version the writer read (0 when there was no document)
-- ARGV[2]  the new document, whose "version" is ARGV[4]
-- ARGV[3]  the channel to publish the new version on (<prefix>config:changed)
-- ARGV[4]  the new version: ARGV[1] + 1, or more when the writer knows of a higher version
--          that was in force (a lost document is re-asserted above it)
-- Returns {1, new version} when written, {0, version found} when another writer won.
-- Atomic in Redis, so two operators (or a leader hand-over) can never both write version N.
local current = redis.call('GET', KEYS[1])
local found = 0
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and tonumber(doc.version) then
    found = tonumber(doc.version)
  end
end
if found ~= tonumber(ARGV[1]) then
  return {0, found}
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {1, tonumber(ARGV[4])}
