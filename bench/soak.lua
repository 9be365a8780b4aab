-- wrk script for bench/soak.sh: a campaign's traffic at a steady rate. Each message is
-- delivered and then read (one in ten fails instead of being read), its two events a
-- little apart; a new batch (uid) every 20,000 messages. Every connection waits DELAY
-- ms between requests, so the rate is about connections * 1000 / DELAY per second.
local counter = 0
local prefix
local delay_ms = tonumber(os.getenv("DELAY") or "40")

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("%08d", math.random(10000000, 99999999))
end

function delay()
  return delay_ms
end

function request()
  counter = counter + 1
  local n = math.floor(counter / 2)
  local id = prefix .. string.format("%010d", n)
  local status = "delivered"
  local extra = ',"conversation":{"id":"c-' .. id .. '","initiateType":"marketing","expireAt":"2026-03-03T12:00:00.000Z"}'
  if counter % 2 == 1 then
    if n % 10 == 0 then
      status = "failed"
      extra = ',"errorData":{"errorCode":"131026","errorMessage":"Message undeliverable"}'
    else
      status = "read"
      extra = ""
    end
  end
  local uid = "soak-" .. prefix .. "-" .. math.floor(n / 20000)
  local second = counter % 60
  local body = '{"id":"e-' .. status .. '-' .. id .. '","type":"whatsapp_message_status_updated",'
    .. '"eventTime":"2026-03-02T09:' .. string.format("%02d", math.floor(counter / 60) % 60) .. ':' .. string.format("%02d", second) .. '.000Z",'
    .. '"body":{"id":"' .. id .. '","accountName":"15902677617","wabaId":"WABA_ID",'
    .. '"status":"' .. status .. '","uid":"' .. uid .. '","sendPhone":"65' .. string.format("%08d", n % 100000000) .. '",'
    .. '"wamid":"wamid.' .. id .. '"' .. extra .. '}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
