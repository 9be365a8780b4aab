-- wrk script for bench/run.sh: POSTs status events rotating delivered / read / failed,
-- every request with its own envelope id and body.id, so dedup cannot short-circuit.
-- Ids have the shape of InnoPaaS's own: body.id an 18-digit number (356139161272397824).
local statuses = {"delivered", "read", "failed"}
local counter = 0
local prefix

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("%08d", math.random(10000000, 99999999))
end

function request()
  counter = counter + 1
  local status = statuses[counter % 3 + 1]
  local id = prefix .. string.format("%010d", counter)
  local extra = ""
  if status == "delivered" then
    extra = ',"conversation":{"id":"00e5a7e14a588d96bd2343d105d03ec5","initiateType":"business_initiated","expireAt":"2023-02-23T12:00:00.000Z"}'
  elseif status == "failed" then
    extra = ',"errorData":{"errorCode":"131014","errorMessage":"Request for url https://URL.jpg failed with error: 404 (Not Found)"}'
  end
  local body = '{"id":"e-' .. id .. '","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:31:08.167Z",'
    .. '"body":{"id":"' .. id .. '","accountName":"15902677617","wabaId":"WHATSAPP_BUSINESS_ACCOUNT_ID",'
    .. '"status":"' .. status .. '","uid":"2002302023002010121","sendPhone":"65123101212312",'
    .. '"wamid":"wamid.HBgNODYxNjY4NTE3NzYxMhUCABEYEjQ0RTYyQTM5QzAyMkU0QkNERgA=-' .. id .. '"' .. extra .. '}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
