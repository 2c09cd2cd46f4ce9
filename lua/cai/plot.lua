-- cai.plot: the inline SVG charts of the run report (cai.report), drawn as
-- strings with no script and no external resource. Every text is
-- HTML-escaped; the output depends only on the inputs.
--
--   cai.plot.line_chart{ title=, series = { { name=, colour=, points = { {x, y}, ... } } }, ... }
--   cai.plot.interval_plot(models, criteria, rates)  -- rates[model][criterion] = { rate=, lo=, hi= }
--   cai.plot.length_histogram(chosen_words, rejected_words)
local plot = {}


-- Series colours in order, and the fixed colours of the report's models.
plot.PALETTE = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf" }
plot.MODEL_COLOURS = { base = "#7f7f7f", sft = "#1f77b4", dpo = "#d62728" }
local PALETTE, MODEL_COLOURS = plot.PALETTE, plot.MODEL_COLOURS

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

---HTML-escapes any value (text and attribute safe); control characters other
---than tab and newline become U+FFFD.
function plot.escape(value)
  local s = type(value) == "string" and value or tostring(value)
  s = s:gsub("[%z\1-\8\11\12\14-\31\127]", "\239\191\189")
  return (s:gsub("[&<>\"']", ESCAPES))
end
local esc = plot.escape

---Whether x is a finite number.
function plot.is_number(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end
local is_number = plot.is_number

---x as a percentage ("12.5%"), "-" when x is not a finite number.
function plot.percent(x, digits)
  if not is_number(x) then return "-" end
  return string.format("%." .. (digits or 1) .. "f%%", 100 * x)
end
local pct = plot.percent

-- Round tick steps: 1, 2 or 5 times a power of ten.
local function nice_step(span, target)
  local raw = span / math.max(1, target)
  local mag = 10 ^ math.floor(math.log10(raw))
  local f = raw / mag
  local step = f <= 1 and 1 or f <= 2 and 2 or f <= 5 and 5 or 10
  return step * mag
end

local function ticks(lo, hi, target)
  local step = nice_step(hi - lo, target)
  local first = math.ceil(lo / step - 1e-9) * step
  local out = {}
  local v = first
  while v <= hi + step * 1e-9 and #out < 50 do
    out[#out + 1] = math.abs(v) < step * 1e-9 and 0 or v
    v = v + step
  end
  return out, step
end

local function tick_label(v, step)
  if v == 0 then return "0" end
  local a = math.max(math.abs(v), step)
  if a >= 1e5 or step < 1e-3 then return (string.format("%.2g", v)) end
  local decimals = math.ceil(-math.log10(step) - 1e-9)
  if decimals < 1 then decimals = 0 end   -- also turns -0 into 0
  return string.format("%." .. decimals .. "f", v)
end

-- Extends [lo, hi] to nice bounds; a flat range is widened.
local function padded_range(lo, hi, fixed)
  if fixed then return fixed[1], fixed[2] end
  if lo == hi then
    local d = lo == 0 and 1 or math.abs(lo) * 0.1
    lo, hi = lo - d, hi + d
  end
  local step = nice_step(hi - lo, 5)
  return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
end

---An SVG line chart.
---@param c table { title=, x_label=, y_label=, series = { { name=, colour=, points = { {x, y}, ... } } },
---  y_range = {lo, hi}?, width = 540, height = 250 }
function plot.line_chart(c)
  local W, H = c.width or 540, c.height or 250
  local ml, mr, mt, mb = 62, 14, 30, 42
  -- the legend sits in the title band, or on its own row when it would touch the title
  local legend_w, legend_y = 0, 19
  if #c.series > 1 then
    for _, s in ipairs(c.series) do legend_w = legend_w + 6.2 * #tostring(s.name) + 26 end
    if W - mr - legend_w < ml + 8.5 * #tostring(c.title) + 12 then legend_y = 35; mt = mt + 16; H = H + 16 end
  end
  local pw, ph = W - ml - mr, H - mt - mb
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local n_points = 0
  for _, s in ipairs(c.series) do
    for _, p in ipairs(s.points) do
      n_points = n_points + 1
      xmin, xmax = math.min(xmin, p[1]), math.max(xmax, p[1])
      ymin, ymax = math.min(ymin, p[2]), math.max(ymax, p[2])
    end
  end
  local out = {}
  local function add(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end
  add(string.format('<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">',
    W, H, W, H, esc(c.title)))
  add(string.format('<text class="ctitle" x="%d" y="18">%s</text>', ml, esc(c.title)))
  if n_points == 0 then
    add(string.format('<text class="note" x="%d" y="%d">no data</text></svg>', ml, mt + ph / 2))
    return table.concat(out)
  end
  if xmin == xmax then xmin, xmax = xmin - 1, xmax + 1 end
  local fixed = c.y_range
  if fixed and (ymin < fixed[1] or ymax > fixed[2]) then fixed = nil end
  ymin, ymax = padded_range(ymin, ymax, fixed)
  local function X(x) return ml + (x - xmin) / (xmax - xmin) * pw end
  local function Y(y) return mt + ph - (y - ymin) / (ymax - ymin) * ph end
  -- grid and ticks
  local yt, ystep = ticks(ymin, ymax, 5)
  for _, v in ipairs(yt) do
    add(string.format('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>', ml, ml + pw, Y(v), Y(v)))
    add(string.format('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>', ml - 5, Y(v) + 3.5,
      esc(tick_label(v, ystep))))
  end
  local xt, xstep = ticks(xmin, xmax, 5)
  for _, v in ipairs(xt) do
    add(string.format('<line class="tickmark" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>', X(v), X(v), mt + ph,
      mt + ph + 4))
    add(string.format('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>', X(v), mt + ph + 15,
      esc(tick_label(v, xstep))))
  end
  add(string.format('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>', ml, ml + pw, mt + ph, mt + ph))
  add(string.format('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>', ml, ml, mt, mt + ph))
  add(string.format('<text class="alabel" x="%.1f" y="%d" text-anchor="middle">%s</text>', ml + pw / 2, H - 6,
    esc(c.x_label or "step")))
  if c.y_label then
    add(string.format('<text class="alabel" transform="translate(12 %.1f) rotate(-90)" text-anchor="middle">%s</text>',
      mt + ph / 2, esc(c.y_label)))
  end
  -- series
  for i, s in ipairs(c.series) do
    local colour = s.colour or PALETTE[(i - 1) % #PALETTE + 1]
    local d = {}
    for k, p in ipairs(s.points) do
      d[#d + 1] = string.format("%s%.1f %.1f", k == 1 and "M" or "L", X(p[1]), Y(p[2]))
    end
    if #s.points > 1 then
      add(string.format('<path class="line" d="%s" stroke="%s"/>', table.concat(d, " "), colour))
    end
    if #s.points <= 40 then
      for _, p in ipairs(s.points) do
        add(string.format('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>', X(p[1]), Y(p[2]), colour))
      end
    end
  end
  -- legend in the title band, right-aligned, when there is more than one series
  if #c.series > 1 then
    local x = W - mr
    for i = #c.series, 1, -1 do
      local s = c.series[i]
      local colour = s.colour or PALETTE[(i - 1) % #PALETTE + 1]
      local text_w = 6.2 * #tostring(s.name)   -- approximate width at 11px
      add(string.format('<text class="legend" x="%.1f" y="%d" text-anchor="end">%s</text>', x, legend_y, esc(s.name)))
      x = x - text_w - 4
      add(string.format('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="2.5"/>', x - 12, x,
        legend_y - 4, legend_y - 4, colour))
      x = x - 22
    end
  end
  add("</svg>")
  return table.concat(out)
end

---Rates with their 95% intervals: one row per criterion, one dot and whisker per model.
---@param models string[]
---@param criteria string[]
---@param table_of table rates[model][criterion] = { rate=, lo=, hi= } or nil
function plot.interval_plot(models, criteria, table_of)
  local label_w, W, row_h, sub = 200, 860, 0, 9
  row_h = #models * sub + 10
  local top = 26
  local H = top + #criteria * row_h + 24
  local pw = W - label_w - 20
  local function X(v) return label_w + v * pw end
  local out = { string.format('<svg class="chart wide" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
    .. 'aria-label="rates with 95%% intervals">', W, H, W, H) }
  for _, v in ipairs { 0, 0.25, 0.5, 0.75, 1 } do
    out[#out + 1] = string.format('<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>', X(v), X(v), top - 4,
      H - 20)
    out[#out + 1] = string.format('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%d%%</text>', X(v), H - 6,
      math.floor(v * 100 + 0.5))
  end
  for j, m in ipairs(models) do
    local x = label_w + (j - 1) * 90
    out[#out + 1] = string.format('<circle cx="%d" cy="12" r="4" fill="%s"/><text class="legend" x="%d" y="16">%s</text>',
      x, MODEL_COLOURS[m] or PALETTE[(j - 1) % #PALETTE + 1], x + 8, esc(m))
  end
  for i, c in ipairs(criteria) do
    local y0 = top + (i - 1) * row_h
    out[#out + 1] = string.format('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>', label_w - 8,
      y0 + row_h / 2 + 2, esc(c))
    if i > 1 then
      out[#out + 1] = string.format('<line class="sep" x1="10" x2="%d" y1="%.1f" y2="%.1f"/>', W - 10, y0 - 1, y0 - 1)
    end
    for j, m in ipairs(models) do
      local r = table_of[m][c]
      local colour = MODEL_COLOURS[m] or PALETTE[(j - 1) % #PALETTE + 1]
      local y = y0 + 5 + (j - 1) * sub + sub / 2
      if r and is_number(r.rate) then
        if r.lo and r.hi then
          out[#out + 1] = string.format('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>',
            X(r.lo), X(r.hi), y, y, colour)
        end
        out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s %s: %s</title></circle>',
          X(r.rate), y, colour, esc(m), esc(c), esc(pct(r.rate)))
      end
    end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- Word-count histogram of chosen vs rejected (SVG grouped bars).
function plot.length_histogram(a, b)
  local max = 0
  for _, v in ipairs(a) do max = math.max(max, v) end
  for _, v in ipairs(b) do max = math.max(max, v) end
  local bins = 12
  local width = math.max(1, math.ceil((max + 1) / bins))
  local ca, cb = {}, {}
  for i = 1, bins do ca[i], cb[i] = 0, 0 end
  for _, v in ipairs(a) do local i = math.min(bins, math.floor(v / width) + 1); ca[i] = ca[i] + 1 end
  for _, v in ipairs(b) do local i = math.min(bins, math.floor(v / width) + 1); cb[i] = cb[i] + 1 end
  local top = 1
  for i = 1, bins do top = math.max(top, ca[i], cb[i]) end
  local W, H, ml, mr, mt, mb = 560, 220, 46, 12, 30, 40
  local pw, ph = W - ml - mr, H - mt - mb
  local bw = pw / bins
  local out = { string.format('<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
    .. 'aria-label="response length histogram">', W, H, W, H),
    string.format('<text class="ctitle" x="%d" y="18">Response length (words)</text>', ml) }
  local yt, ystep = ticks(0, top, 4)
  for _, v in ipairs(yt) do
    local y = mt + ph - v / top * ph
    out[#out + 1] = string.format('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>', ml, ml + pw, y, y)
    out[#out + 1] = string.format('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>', ml - 5, y + 3.5,
      tick_label(v, math.max(1, ystep)))
  end
  for i = 1, bins do
    local x = ml + (i - 1) * bw
    local ha, hb = ca[i] / top * ph, cb[i] / top * ph
    out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>', x + 2,
      mt + ph - ha, bw / 2 - 2, ha, PALETTE[1])
    out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>', x + bw / 2,
      mt + ph - hb, bw / 2 - 2, hb, PALETTE[2])
    if i % 2 == 1 then
      out[#out + 1] = string.format('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%d</text>', x + bw / 2,
        mt + ph + 15, (i - 1) * width)
    end
  end
  out[#out + 1] = string.format('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>', ml, ml + pw, mt + ph, mt + ph)
  out[#out + 1] = string.format('<text class="alabel" x="%.1f" y="%d" text-anchor="middle">words (bins of %d)</text>',
    ml + pw / 2, H - 6, width)
  out[#out + 1] = string.format('<rect x="%d" y="8" width="10" height="10" fill="%s"/><text class="legend" x="%d" '
    .. 'y="17">chosen</text><rect x="%d" y="8" width="10" height="10" fill="%s"/><text class="legend" x="%d" '
    .. 'y="17">rejected</text>', W - 150, PALETTE[1], W - 136, W - 80, PALETTE[2], W - 66)
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

return plot
