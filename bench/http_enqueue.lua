-- wrk script: POST one 100-byte text message per request to the queue named in the URL.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"body":"' .. string.rep("x", 100) .. '","content_type":"text"}'

local errors = 0
function response(status, headers, body)
  if status ~= 201 then errors = errors + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("wrk_non_2xx %d\n", summary.errors.status))
end
