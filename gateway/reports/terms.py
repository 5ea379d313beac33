"""Every word of the report, in Chinese and English (the terms of the mine's own vocabulary: 初撑力, 末阻力,
合格率, 安全阀开启, ...). The code says a term's key; :func:`word` gives it in the report's language."""
from __future__ import annotations

LANGS = ("zh", "en")

TERMS: dict[str, tuple[str, str]] = {
    # titles
    "title": ("生产日报", "Daily report"),
    "site": ("矿井", "Site"),
    "date": ("日期", "Date"),
    "shift_of": ("班次", "Shift"),
    "whole_day": ("全天", "whole day"),
    "generated": ("生成时间", "Generated"),
    "timezone": ("时区", "Time zone"),
    "roof_faces": ("矿压监测：工作面汇总", "Roof pressure: faces"),
    "roof_supports": ("矿压监测：支架明细", "Roof pressure: supports"),
    "equipment": ("设备运行", "Equipment"),
    "alarms": ("报警", "Alarms"),
    "completeness": ("数据完整性", "Data completeness"),
    "gaps": ("数据中断", "Data gaps"),
    "outages": ("网关与链路中断", "Gateway and link outages"),
    "chart_roof": ("支架初撑力与末阻力（{face}，{shift}）", "Setting load and end resistance ({face}, {shift})"),
    "chart_equipment": ("设备运行时间", "Machine hours"),
    "chart_completeness": ("数据完整率", "Data completeness"),
    "support_axis": ("支架号", "Support"),
    "mpa_axis": ("压力 (MPa)", "Pressure (MPa)"),
    "hours_axis": ("小时", "Hours"),
    "percent_axis": ("%", "%"),
    "required_line": ("要求初撑力 {mpa} MPa", "required setting {mpa} MPa"),
    "none": ("无", "none"),
    # columns
    "shift": ("班次", "shift"),
    "face": ("工作面", "face"),
    "support": ("支架号", "support"),
    "leg_cycles": ("立柱循环数", "leg cycles"),
    "setting_mean": ("初撑力均值 (MPa)", "setting load mean (MPa)"),
    "setting_min": ("初撑力最小 (MPa)", "setting load min (MPa)"),
    "end_mean": ("末阻力均值 (MPa)", "end resistance mean (MPa)"),
    "end_max": ("末阻力最大 (MPa)", "end resistance max (MPa)"),
    "pass_rate": ("初撑力合格率 (%)", "setting pass rate (%)"),
    "yields": ("安全阀开启次数", "yield-valve openings"),
    "longest_under_min": ("最长初撑力不足 (min)", "longest under-set (min)"),
    "never_set": ("从未达标", "never properly set"),
    "under_too_long": ("不足超时", "under-set too long"),
    "required_mpa": ("要求初撑力 (MPa)", "required setting (MPa)"),
    "supports": ("支架数", "supports"),
    "never_set_list": ("从未达标支架", "supports never properly set"),
    "under_too_long_list": ("初撑力不足超时支架", "supports under-set too long"),
    "machine": ("设备", "machine"),
    "area": ("区域", "area"),
    "running_h": ("运行 (h)", "running (h)"),
    "stopped_h": ("停机 (h)", "stopped (h)"),
    "fault_h": ("故障 (h)", "fault (h)"),
    "offline_h": ("离线 (h)", "offline (h)"),
    "no_data_h": ("无数据 (h)", "no data (h)"),
    "stops": ("停机次数", "stops"),
    "faults": ("故障次数", "faults"),
    "device": ("设备", "device"),
    "alarm": ("报警", "alarm"),
    "priority": ("优先级", "priority"),
    "raised": ("报警次数", "raised"),
    "acknowledged": ("确认次数", "acknowledged"),
    "longest_active_min": ("最长持续 (min)", "longest active (min)"),
    "state_at_end": ("班末状态", "state at shift end"),
    "unacked_at_end": ("班末未确认", "unacknowledged at shift end"),
    "basis": ("计算方式", "basis"),
    "interval_s": ("周期 (s)", "interval (s)"),
    "expected": ("应到", "expected"),
    "stored": ("实到", "stored"),
    "completeness_pct": ("完整率 (%)", "completeness (%)"),
    "gaps_count": ("中断次数", "gaps"),
    "longest_gap_s": ("最长中断 (s)", "longest gap (s)"),
    "comm_fail_share": ("通信失败占比 (%)", "comm-fail share (%)"),
    "gap_start": ("开始", "from"),
    "gap_end": ("结束", "to"),
    "gap_s": ("时长 (s)", "duration (s)"),
    "explained_by": ("原因", "explained by"),
    "outage": ("中断类型", "outage"),
    "subject": ("对象", "subject"),
    "outage_start": ("开始", "from"),
    "outage_end": ("结束", "to"),
    "outage_s": ("时长 (s)", "duration (s)"),
    # values
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "polls": ("按轮询", "polls"),
    "windows": ("按时间窗", "windows"),
    "active_unack": ("报警未确认", "active, unacknowledged"),
    "active_ack": ("报警已确认", "active, acknowledged"),
    "cleared_unack": ("已恢复未确认", "cleared, unacknowledged"),
    "normal": ("正常", "normal"),
    "gateway_silent": ("网关无数据", "gateway silent"),
    "historian_down": ("历史库链路中断", "historian link down"),
    "mqtt_down": ("MQTT链路中断", "MQTT link down"),
    "device_offline": ("设备离线", "device offline"),
    "historian-dropping": ("历史数据丢弃", "historian dropping"),
    "mqtt-dropping": ("MQTT数据丢弃", "MQTT dropping"),
    "historian-buffer-unwritable": ("缓存不可写", "historian buffer unwritable"),
}
# the column keys of the completeness table differ from the words they share with the titles
COLUMN_TERMS = {"completeness": "completeness_pct", "gaps": "gaps_count"}


def word(key: str, lang: str, **values) -> str:
    """``key`` in ``lang``; an unknown key is shown as it is (a device id, a new gateway alarm)."""
    pair = TERMS.get(key)
    text = key if pair is None else pair[LANGS.index(lang)]
    return text.format(**values) if values else text


def column(key: str, lang: str) -> str:
    return word(COLUMN_TERMS.get(key, key), lang)


VALUE_COLUMNS = ("basis", "state_at_end", "outage", "explained_by")  # cells holding terms, not names


def cell(value, column_key: str, lang: str) -> str:
    """A table cell as the reader sees it: yes/no, terms translated, numbers as computed, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return word("yes" if value else "no", lang)
    if column_key in VALUE_COLUMNS and isinstance(value, str):
        return ", ".join(word(v.strip(), lang) for v in value.split(",")) if value else ""
    return str(value)
