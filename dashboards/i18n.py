"""The dashboards in Chinese (``minegw dashboards build --lang zh``): one term dictionary, applied to the
built JSON model, so that both languages are the same dashboards (same panels, queries, layout).

What is translated: titles (dashboards, rows, panels, links), descriptions, variable labels, the texts
of value mappings (status, alarm states, trip and online labels). A text with numbers that come from
the site (setting pressure, limits) is looked up with its numbers as ``{}`` and filled back in order.
What stays as it is (``ALLOWED``): units, product and protocol names, the SNMP object names, and
ids (``${area}``, devices, alarms). The zh dashboards get their own uids (``<uid>-zh``), tag and folder.
Terms follow the domain reference (mine-domain.md): 采煤机, 刮板输送机, 液压支架, 初撑力, 末阻力, …
"""
from __future__ import annotations

import re

LANGS = ("en", "zh")
NUMBER = re.compile(r"(?<![\w$.])\d+(?:\.\d+)?(?![\w])")
TRANSLATED_KEYS = ("title", "description", "label", "text", "displayName", "noValue")
SKIPPED_KEYS = ("sortBy", "transformations", "targets")  # names of columns, not texts
# Latin text allowed in zh: units, names of products, protocols and SNMP objects, template variables.
ALLOWED = re.compile(
    r"\$\{[^}]*\}|\$\w+|minegw( alarm ack)?|InfluxDB|MQTT|SNMP|ONVIF|UPS|MT \d+|AQ \d+|ifIndex|ifOperStatus|"
    r"ifInErrors|ifHCIn/OutOctets|sysUpTime|historian-dropping|mqtt-dropping|ups_on_battery|URI|"
    r"MPa/h|MPa|kN|m/min|m/s|t/h|L/min|mm|cm|°C|CH4|ms|\bN\b|\b[VAshm]\b|%|"
    r"https?://[\w.:/-]+|RTSP|HLS|kbps|docs/video\.md|video\.uplink_budget_kbps|"
    r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")

TERMS: dict[str, str] = {
    # the video relay's tiles and panels (dashboards/video_broadcast.py; docs/video.md)
    "Live": "实时视频", "Live (video relay)": "实时视频（视频中继）",
    "Live sub-stream through the gateway's relay (HLS, about one segment behind)":
        "经网关视频中继的实时子码流（HLS，约滞后一个分片）",
    "Per camera, over the time range: reconnects to the camera, viewers of the relay":
        "每台摄像机，所选时间段内：重连摄像机次数、中继的观看者数",
    "Relay: camera streams": "中继：摄像机视频流", "Relayed streams": "中继的视频流", "Stream health": "视频流健康",
    "The gateway's video uplink against video.uplink_budget_kbps": "网关视频上行带宽与站点预算 video.uplink_budget_kbps 对比",
    "To the surface (RTSP to viewers and HLS served) and from the camera":
        "送往地面（RTSP 观看与 HLS 服务）及来自摄像机的码率",
    "Uplink per camera": "每台摄像机的上行带宽", "Video relay": "视频中继", "Video uplink and budget": "视频上行带宽与预算",
    "no stream": "无视频流", "streaming": "推流中",
    "the gateway's video relay, as this browser reaches it (docs/video.md)": "本浏览器访问网关视频中继的地址（见 docs/video.md）",
    # dashboards, rows, variables
    "minegw · Mine overview": "minegw · 矿井总览", "minegw · Longwall face": "minegw · 综采工作面",
    "minegw · Roadway driving": "minegw · 掘进工作面", "minegw · Belt line": "minegw · 带式输送机",
    "minegw · Roof pressure": "minegw · 矿压监测", "minegw · Video and broadcast": "minegw · 视频与广播",
    "minegw · Alarms and commands": "minegw · 报警与命令", "minegw · Gateway health": "minegw · 网关状态",
    "minegw · Network": "minegw · 井下环网",
    "Areas, active alarms and gateway health of one mine": "全矿各区域、当前报警与网关状态",
    "Shearer, supports and face conveyor of a longwall face": "综采工作面的采煤机、液压支架与刮板输送机",
    "Roadheaders at the heading faces": "掘进工作面的掘进机",
    "Belt conveyors: speed, load and protections": "带式输送机：带速、运量与保护",
    "Roof separation, anchor loads and support metrics": "顶板离层、锚杆/锚索受力与支架指标",
    "Cameras and emergency broadcast nodes": "摄像机与应急广播节点",
    "Alarm list, alarm history, command audit": "报警列表、报警历史、命令审计",
    "Polling, buffering and delivery of the gateways": "网关的轮询、缓存与上传",
    "Ring networks, switches, links and UPS": "环网、交换机、链路与 UPS",
    "Site": "矿井", "Area": "区域", "Device": "设备", "All": "全部",
    "Areas": "区域", "Alarms": "报警", "Gateway": "网关", "Face": "工作面", "Shearer": "采煤机",
    "Face conveyor": "刮板输送机", "Motors": "电机", "Hydraulics": "液压系统", "Machine": "整机",
    "Transport": "运输", "Protections (MT {})": "保护（MT {}）", "Supports": "液压支架",
    "Roof separation (离层)": "顶板离层", "Anchor loads (锚杆/锚索)": "锚杆/锚索受力", "Cameras": "摄像机",
    "Emergency broadcast": "应急广播", "Devices": "设备", "Historian buffer": "历史库缓存", "Throughput": "吞吐量",
    "Rings": "环网", "Switches and links": "交换机与链路", "UPS": "UPS",
    # links
    "minegw": "minegw", "Alarms of ${__field.labels.device}": "${__field.labels.device} 的报警",
    "Only ${__field.labels.device}": "只看 ${__field.labels.device}", "Open ${__data.fields.area}": "打开 ${__data.fields.area}",
    "Cameras of ${area}": "${area} 的摄像机", "Longwall face ${area}": "综采工作面 ${area}",
    "Roof pressure of ${area}": "${area} 的矿压", "Open the network dashboard": "打开环网看板",
    "Alarms and commands": "报警与命令", "Mine overview": "矿井总览", "Gateway health": "网关状态",
    "Alarm history": "报警历史",
    # value mappings
    "stopped": "停机", "running": "运行", "offline": "离线", "fault": "故障", "no data": "无数据",
    "no status yet": "暂无状态", "ok": "正常", "TRIP": "保护动作", "online": "在线", "closed": "闭环",
    "open": "开环", "segmented": "分段", "unknown": "未知", "up": "正常", "down": "中断",
    "idle": "空闲", "routine": "日常广播", "dispatcher": "调度广播", "EMERGENCY": "应急广播",
    "ACTIVE, not acknowledged": "报警中，未确认", "active, acknowledged": "报警中，已确认",
    "cleared, not acknowledged": "已恢复，未确认", "normal": "正常",
    "{} critical": "{} 紧急", "{} high": "{} 高", "{} medium": "{} 中", "{} low": "{} 低",
    # overview
    "No data since": "数据中断的设备", "Machines whose readings stopped (their gateway or the uplink is down, or the "
    "machine's link): the time of their last reading": "读数已中断的设备（网关或上行链路中断，或设备连接中断）：最后一次读数的时间",
    "Longwall faces": "综采工作面", "Headings": "掘进工作面", "Belt lines": "带式输送机", "Network": "环网",
    "Gateways": "网关", "Uplinks": "上行链路", "Active alarms": "当前报警", "Active alarms by priority": "按优先级的当前报警",
    "Devices online": "在线设备", "Data dropped": "丢失数据", "MQTT uplink": "MQTT 上传",
    "Worst status of the area's equipment; click for the area's dashboard": "区域内设备的最差状态；点击打开该区域看板",
    "Worst state of the site's rings: closed, open (redundancy lost), segmented (devices cut off); click for the "
    "network dashboard": "全矿环网的最差状态：闭环、开环（失去冗余）、分段（设备被隔断）；点击打开环网看板",
    "Down: stopped (its last status), or no health point for {} s (crashed, cut off); click for gateway health":
        "中断：已停止（最近状态），或 {} 秒内无健康数据（崩溃、断开）；点击打开网关状态",
    "Each district broker's bridge to the surface (its notification; the surface broker's last will when it is cut)":
        "各采区 MQTT 代理到地面的桥接（桥接通知；断开时为地面代理的遗嘱消息）",
    "Alarms raised and not cleared, whatever their age": "已触发且未恢复的报警（不论多久以前）",
    "Most urgent first: {} critical … {} low": "最紧急的在前：{} 紧急 … {} 低",
    "Devices whose latest health interval had a good poll, of the devices reporting": "最近一个健康周期内轮询成功的设备 / 上报的设备",
    "Lines waiting for InfluxDB": "等待写入 InfluxDB 的数据行",
    "Per gateway: lines or messages lost since it started (should be {})": "每个网关：启动以来丢失的数据行或消息（应为 {}）",
    "Per gateway: messages waiting for the broker": "每个网关：等待发往 MQTT 代理的消息",
    # longwall
    "Shearer position (support number)": "采煤机位置（架号）",
    "Where the shearer cuts along the face: the position curve": "采煤机沿工作面的割煤位置：位置曲线",
    "Supports below setting pressure": "初撑力不足的支架",
    "Per roof-pressure device (one per face): supports whose latest setting load was below {} MPa":
        "每台矿压设备（每个工作面一台）：最近初撑力低于 {} MPa 的支架数",
    "Front leg pressure by support": "各支架前柱压力", "Rear leg pressure by support": "各支架后柱压力",
    "Grey: lowered to advance; orange: below the setting pressure ({} MPa); green: set; red: at the yield valve "
    "({} MPa and over)": "灰色：降柱移架；橙色：低于初撑力（{} MPa）；绿色：已支撑；红色：达到安全阀开启压力（{} MPa 及以上）",
    "Equipment status": "设备状态", "Cutting and haulage motor currents": "截割与牵引电机电流",
    "Motor temperatures": "电机温度", "Alarm about {} °C, trip about {} °C": "约 {} °C 报警，约 {} °C 跳闸",
    "Haulage speed and drum heights": "牵引速度与滚筒高度", "Haulage speed in m/min, drum heights in cm": "牵引速度 m/min，滚筒高度 cm",
    "Hydraulics and cooling water": "液压与冷却水", "Pressures in MPa, flow in L/min": "压力 MPa，流量 L/min",
    "Methane on the shearer": "采煤机甲烷浓度", "Alarm {} %, power cut {} % (AQ {})": "{} % 报警，{} % 断电（AQ {}）",
    "Pitch and roll": "俯仰与横滚", "Drive currents": "驱动电流", "Drive power": "驱动功率",
    "Chain speed and tension": "链速与链条张力", "Speed in m/s, tension in kN": "速度 m/s，张力 kN",
    "Gearbox oil and bearing temperatures": "减速器油温与轴承温度", "Crusher vibration": "破碎机振动",
    # roadway
    "Roadheader status": "掘进机状态", "Cutting and pump motor currents": "截割与油泵电机电流",
    "Cutting and pump motor temperatures": "截割与油泵电机温度", "Oil temperature": "油温", "Alarm about {} °C": "约 {} °C 报警",
    "Oil level": "油位", "System and spray water pressure": "系统压力与喷雾水压", "Methane at the heading": "掘进工作面甲烷浓度",
    "Alarm {} %, power cut {} %": "{} % 报警，{} % 断电", "Boom angles": "截割臂角度",
    "Travel speed and supply voltage": "行走速度与供电电压", "m/min; V": "m/min；V",
    # belt
    "Belt status": "皮带状态", "Belt speed": "带速", "Belts run {}-{} m/s; slip below {} % of rated speed":
        "带速 {}-{} m/s；低于额定带速 {} % 为打滑", "Load": "运量", "Belt scale, t/h": "皮带秤，t/h",
    "Motor current": "电机电流", "Belt tension": "皮带张力", "Supply voltage": "供电电压",
    "Stop below {} % of nominal": "低于额定电压 {} % 停机", "Misalignment": "跑偏",
    "Alarm at {} mm past the idler edge": "超出托辊边缘 {} mm 报警", "Smoke": "烟雾", "Stop at {} % for {} s": "{} % 持续 {} 秒停机",
    "Drive drum temperature": "驱动滚筒温度", "Sprinkler at about {} °C": "约 {} °C 洒水", "Slip": "打滑",
    "Misalignment trip": "跑偏保护", "Tear": "撕裂", "Pile up": "堆煤", "Smoke trip": "烟雾保护",
    "Over temperature": "超温", "Emergency stop": "急停", "Lockout": "闭锁",
    # roof pressure
    "Load-rise rate (front legs)": "增阻速率（前柱）",
    "MPa/h over each support cycle; above {} MPa/h signals periodic weighting": "每个支护循环的 MPa/h；超过 {} MPa/h 表示周期来压",
    "Setting load by support (front legs, latest cycle)": "各支架初撑力（前柱，最近循环）",
    "初撑力: below {} MPa the support is under-set": "初撑力：低于 {} MPa 即支架初撑不足",
    "End resistance by support (front legs, latest cycle)": "各支架末阻力（前柱，最近循环）",
    "末阻力: the pressure before the leg was lowered": "末阻力：降柱前的压力",
    "Setting load by support (front legs, mean over the time range)": "各支架初撑力（前柱，时间范围内平均）",
    "The daily report's view: choose the day as the time range": "日报视图：时间范围选择当天",
    "Yield-valve openings by support (front legs, time range)": "各支架安全阀开启次数（前柱，时间范围内）",
    "Safety-valve openings counted over the support cycles": "按支护循环统计的安全阀开启次数",
    "Supports whose latest setting load was below {} MPa": "最近初撑力低于 {} MPa 的支架数",
    "Roof separation, deep anchors": "顶板离层，深基点", "Roof separation, shallow anchors": "顶板离层，浅基点",
    "Anchor {}-{} m into the roof; inside the bolted zone it should stay within {}-{} mm":
        "基点深入顶板 {}-{} m；锚固区内应不超过 {}-{} mm",
    "Bolt loads": "锚杆受力", "Cable loads": "锚索受力", "Load cells {}-{}/{} kN": "测力计 {}-{}/{} kN",
    # video and broadcast
    "Cameras online": "摄像机在线", "Camera response time": "摄像机响应时间", "ONVIF round trip of the periodic check": "定期检查的 ONVIF 往返时间",
    "Cameras and stream links": "摄像机与视频流地址",
    "What each camera is and offers (latest inventory, last {} days)": "各摄像机的型号与能力（最近清单，近 {} 天）",
    "Camera events: motion": "摄像机事件：移动侦测", "Broadcast nodes online": "广播节点在线", "Playing": "播放中",
    "Battery level": "电池电量", "Node faults": "节点故障", "Broadcasts by the dispatch (command log)": "调度发起的广播（命令记录）",
    "Play, stop and volume commands; refused ones with the reason": "播放、停止与音量命令；被拒绝的附原因",
    "Broadcasts started by alarms (linkage)": "报警联动的广播",
    "Alarm → evacuation message in the area's zones and escape routes; time to every node's confirmation":
        "报警 → 区域分区与避灾路线的撤人广播；到所有节点确认的时间",
    # alarms and commands
    "Alarms needing attention": "需处理的报警",
    "Active, or cleared but not acknowledged; acknowledge with `minegw alarm ack`": "报警中，或已恢复未确认；用 `minegw alarm ack` 确认",
    "Alarm lifecycle": "报警生命周期", "Every transition of every alarm in the time range, newest first": "时间范围内所有报警的每次状态变化，最新的在前",
    "Command audit": "命令审计", "Every write and broadcast command, accepted or refused: who, what, why, and the result":
        "每条写入与广播命令（接受或拒绝）：谁、做什么、为什么、结果",
    # gateway health
    "Poll latency": "轮询延时", "Request to last answer of a poll, averaged per health interval ({} s)": "一次轮询从请求到最后应答的时间，按健康周期（{} 秒）平均",
    "Poll errors": "轮询错误", "Polls that failed to communicate, and samples of any quality but good": "通信失败的轮询，以及质量非良好的采样",
    "Device links": "设备连接", "Online / offline as the gateway saw it (points at each change)": "网关看到的在线 / 离线（每次变化一个点）",
    "Buffer depth": "缓存深度", "Lines in the durable buffer waiting for InfluxDB; dead letters need a replay": "持久缓存中等待写入 InfluxDB 的数据行；死信需重放",
    "Back-fill progress": "补传进度", "How far behind the historian is: falls to {} when the back-fill is done": "历史库落后多少：补传完成后降为 {}",
    "Historian throughput": "历史库吞吐量", "Lines per second into the buffer and out to InfluxDB": "每秒进入缓存和写入 InfluxDB 的数据行",
    "MQTT throughput": "MQTT 吞吐量", "Messages per second produced and acknowledged by the broker": "每秒产生和被 MQTT 代理确认的消息",
    "Queues": "队列", "Waiting for the broker; failed InfluxDB writes": "等待 MQTT 代理；InfluxDB 写入失败",
    "Data lost": "数据丢失", "Should stay {}: anything here raised a gateway alarm": "应保持为 {}：这里出现的都已触发网关报警",
    "Gateway alarms": "网关报警", "Data loss (historian-dropping, mqtt-dropping) and broadcast nodes that did not confirm, raised and "
    "cleared": "数据丢失（historian-dropping、mqtt-dropping）与未确认的广播节点，触发与恢复",
    # network
    "Each ring's latest diagnosis: closed, open (redundancy lost), segmented (switches and devices cut off)":
        "各环网最近诊断：闭环、开环（失去冗余）、分段（交换机与设备被隔断）",
    "Where the ring is broken": "环网断点", "The open link(s) by switch and port, the islands, what is cut off behind them":
        "按交换机与端口列出的断开链路、孤岛以及其后被隔断的设备",
    "Ring state history": "环网状态历史", "Closed, open, segmented over time (a point at each change of the diagnosis)":
        "闭环、开环、分段随时间的变化（诊断每次变化一个点）",
    "Switches": "交换机", "Topology as a status grid: SNMP answers per interval of each switch (red: none)": "状态网格形式的拓扑：各交换机每个区间的 SNMP 应答（红色：无）",
    "Link status": "链路状态", "ifOperStatus of every port read (port N = ifIndex N): up / down over time": "每个端口的 ifOperStatus（端口 N = ifIndex N）：正常 / 中断随时间变化",
    "Input errors": "输入错误", "ifInErrors per second per port: a rising line is a failing cable or connector": "每端口每秒 ifInErrors：曲线上升说明线缆或接头故障",
    "Traffic": "流量", "ifHCIn/OutOctets as bits per second per port": "每端口 ifHCIn/OutOctets 折算的比特率",
    "Switch uptime": "交换机运行时间", "sysUpTime: a drop to {} is a restart": "sysUpTime：降到 {} 表示重启",
    "On battery": "电池供电", "Output source battery (mains lost): the ups_on_battery alarm": "输出来自电池（市电中断）：ups_on_battery 报警",
    "Battery": "电池", "Estimated minutes remaining and charge": "预计剩余分钟数与电量",
    "Mains and load": "市电与负载", "Input voltage ({} on battery) and output load": "输入电压（电池供电时为 {}）与输出负载",
}


def translate_text(text: str, lang: str) -> str:
    """``text`` in ``lang``; unchanged when the dictionary has no entry (the zh test finds those)."""
    if lang == "en" or not text:
        return text
    if text in TERMS:
        return TERMS[text]
    numbers = NUMBER.findall(text)
    template = TERMS.get(NUMBER.sub("{}", text))
    return template.format(*numbers) if template is not None else text


# Column names (the queries' aliases): Grafana shows them as legends and table headers. The queries stay the
# same in every language (transformations and overrides match these names); a displayName override per
# panel shows the translation. Signal names (snake_case) are shown as such.
ALIASES: dict[str, str] = {
    'MQTT dropped': 'MQTT 丢弃',
    'MQTT queued': 'MQTT 排队',
    'action': '动作',
    'active': '活动',
    'answers': '应答',
    'battery': '电池',
    'budget': '预算',
    'buffered': '已缓存',
    'charge %': '电量 %',
    'code': '代码',
    'dead letters': '死信',
    'degraded links': '劣化链路',
    'delivered': '已送达',
    'depth': '深度',
    'devices cut off': '被切断的设备',
    'failed polls': '失败轮询',
    'firmware': '固件',
    'from camera': '来自摄像机',
    'historian': '历史库',
    'historian dropped': '历史库丢弃',
    'historian retries': '历史库重试',
    'input V': '输入电压 V',
    'islands': '孤岛',
    'kind': '类型',
    'lines waiting': '待写行数',
    'load': '负载',
    'load %': '负载 %',
    'lockout': '闭锁',
    'main stream': '主码流',
    'manufacturer': '制造商',
    'max': '最大',
    'mean': '平均',
    'message': '消息',
    'methane': '瓦斯',
    'minutes left': '剩余分钟',
    'misalignment': '跑偏',
    'miswired ends': '接错的端口',
    'model': '型号',
    'motion': '移动侦测',
    'mqtt': 'MQTT',
    'ok': '正常',
    'oldest line waiting': '最早待写行',
    'on battery': '电池供电',
    'online': '在线',
    'open links': '断开的链路',
    'pitch': '俯仰角',
    'polls': '轮询',
    'priority': '优先级',
    'profiles (stream URIs without credentials)': '配置（视频流地址，不含凭据）',
    'published': '已发布',
    'queued': '排队',
    'reconnects': '重连',
    'reporting': '上报中',
    'response': '响应',
    'roll': '横滚角',
    'samples not good': '质量异常的采样',
    'seen': '最后出现',
    'slip': '打滑',
    'smoke': '烟雾',
    'speed': '速度',
    'state': '状态',
    'status': '状态',
    'streaming': '推流中',
    'supports': '支架',
    'switches cut off': '被切断的交换机',
    'tear': '撕裂',
    'tension': '张力',
    'unreachable': '不可达',
    'up': '在线',
    'uplink': '上行链路',
    'uplink kbit/s': '上行 kbit/s',
    'uptime': '运行时长',
    'viewers': '观看者',
    'what': '内容',
    'written': '已写入',
}
_ALIAS = re.compile(r'AS "([^"]+)"')


def visible_texts(node, where: str = ""):
    """(where, text) of every text a dashboard model shows (the keys ``localise`` translates)."""
    if isinstance(node, dict):
        if "targets" in node:  # a panel: the column names its queries give, unless shown under another name
            shown = _display_named(node)
            for alias in sorted(set(_aliases(node)) - shown):
                yield f"{where}.targets (column)", alias
        for key, value in node.items():
            if key in SKIPPED_KEYS:
                continue
            if key in TRANSLATED_KEYS and isinstance(value, str):
                yield f"{where}.{key}", value
            else:
                yield from visible_texts(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from visible_texts(item, f"{where}[{i}]")


def _aliases(panel: dict) -> list[str]:
    return [a for t in panel.get("targets") or [] if isinstance(t.get("query"), str) for a in _ALIAS.findall(t["query"])]


def _display_named(panel: dict) -> set[str]:
    overrides = (panel.get("fieldConfig") or {}).get("overrides") or []
    return {o["matcher"].get("options") for o in overrides if o.get("matcher", {}).get("id") == "byName"
            and any(p.get("id") == "displayName" for p in o.get("properties", []))}


def _name_columns(panel: dict) -> None:
    """A displayName override for every translated column name of the panel (see ALIASES)."""
    shown = _display_named(panel)
    todo = [a for a in dict.fromkeys(_aliases(panel)) if a in ALIASES and a not in shown]
    if todo:
        config = panel.setdefault("fieldConfig", {"defaults": {}, "overrides": []})
        config.setdefault("overrides", []).extend(
            {"matcher": {"id": "byName", "options": a}, "properties": [{"id": "displayName", "value": ALIASES[a]}]}
            for a in todo)


def _walk(node, lang: str) -> None:
    if isinstance(node, dict):
        if "targets" in node:  # a panel: its queries' column names too
            _name_columns(node)
        for key, value in node.items():
            if key in SKIPPED_KEYS:
                continue
            if key in TRANSLATED_KEYS and isinstance(value, str):
                node[key] = translate_text(value, lang)
            else:
                _walk(value, lang)
    elif isinstance(node, list):
        for item in node:
            _walk(item, lang)


def localise(model: dict, lang: str, uids: set[str]) -> dict:
    """The dashboard ``model`` in ``lang`` (in place): texts translated; for zh its own uid, tag and links
    (``<uid>-zh``), so both sets live side by side in Grafana (uids are global)."""
    if lang == "en":
        return model
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
    _walk(model, lang)
    text = _retarget(model, lang, uids)
    model.clear()
    model.update(text)
    return model


def _retarget(model: dict, lang: str, uids: set[str]) -> dict:
    import json

    raw = json.dumps(model, ensure_ascii=False)
    for uid in sorted(uids, key=len, reverse=True):
        raw = raw.replace(f'"/d/{uid}?', f'"/d/{uid}-{lang}?')
    out = json.loads(raw)
    out["uid"] = f"{model['uid']}-{lang}"
    out["tags"] = [f"{t}-{lang}" for t in model.get("tags", [])]
    for link in out.get("links", []):
        if link.get("tags"):
            link["tags"] = [f"{t}-{lang}" for t in link["tags"]]
    return out
