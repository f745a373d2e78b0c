"""Write the small CLUENER-format sample that ships with llm-ner (llm_ner/sample_data/cluener/).

Every sentence comes from the templates below, filled with entity strings from the pools below;
all of it was written for this project, none of it is copied from CLUENER or another corpus. The
sample lets the quickstart and the tests run where the real CLUENER files are not available. It is
template text: scores on it say nothing about CLUENER.

    python scripts/make_sample_data.py            # rewrites train.json (800) and dev.json (200)
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

# Entity strings by CLUENER type (kept as written, a few per line).
# fmt: off
POOLS: dict[str, list[str]] = {
    "name": ["林晓峰", "陈雨桐", "周文博", "赵思远", "王可欣", "刘建国", "孙若兰", "郑浩然", "黄丽萍", "吴天宇",
             "何静怡", "马志强", "许嘉文", "高明远", "梁诗涵", "罗俊杰", "谢婉清", "唐子墨", "韩雪松", "冯一鸣"],
    "address": ["杭州", "成都市武侯区", "青岛", "江苏南通", "昆明", "西安市雁塔区", "长沙", "福建泉州", "兰州",
                "南京鼓楼区", "桂林", "大连", "哈尔滨", "宁波", "贵阳花溪区", "山东威海"],
    "company": ["星河科技", "远航物流公司", "青禾食品", "蓝鲸互娱", "华鼎集团", "云帆软件", "金穗农业", "北辰汽车",
                "启明证券", "晨光文具厂", "海川电气", "白鹭航空"],
    "government": ["市教育局", "省交通厅", "区卫生健康委员会", "市公安局", "县人民法院", "国家统计局",
                   "市生态环境局", "省财政厅", "市文化和旅游局", "区人民政府"],
    "organization": ["红星足球俱乐部", "青年志愿者协会", "市作家协会", "海风篮球队", "蓝天合唱团", "城南中学",
                     "东湖大学", "山水摄影社", "银杏读书会", "飞鹰排球队"],
    "position": ["总经理", "教授", "主任", "主教练", "董事长", "工程师", "副市长", "校长", "设计师", "研究员",
                 "队长", "总监"],
    "book": ["《山风记》", "《雨夜的灯》", "《远方来信》", "《城南旧梦》", "《星河笔记》", "《草木集》",
             "《海边的书店》", "《十二封家书》"],
    "movie": ["《归途》", "《长夜将明》", "《风起之时》", "《逆光少年》", "《第七站台》", "《雪落无声》",
              "《南方的河》"],
    "game": ["《星际远征》", "《剑影江湖》", "《迷城守卫》", "《方块王国》", "《深海猎人》", "《幻想赛车》",
             "《云端农场》"],
    "scene": ["西湖", "黄山", "九寨沟", "鼓浪屿", "洱海", "故宫博物院", "张家界", "月牙泉", "千岛湖"],
}
# fmt: on

TEMPLATES = [
    "{name}是{company}的{position}，上周他在{address}参加了行业论坛。",
    "据{government}消息，{address}今年将新建三所学校。",
    "{organization}昨晚以二比一战胜对手，{position}{name}赛后表示很满意。",
    "我最近在读{book}，作者{name}把{address}的老街写得很生动。",
    "{movie}将于下月上映，导演{name}说拍摄用了整整两年。",
    "{company}宣布{game}的新版本将在暑假推出。",
    "周末去{scene}的游客比平时多了一倍，{government}提醒大家错峰出行。",
    "{name}在{organization}担任{position}已经十年了。",
    "玩{game}的人大多来自{address}和周边城市。",
    "{government}联合{company}在{address}开展了消费安全检查。",
    "{position}{name}接受采访时谈到了{book}的创作经过。",
    "听说{movie}改编自同名小说{book}，我打算先看书再看电影。",
    "{address}的{scene}今天开放了夜游项目，门票五十元。",
    "{company}的股价今天上涨了百分之三。",
    "{organization}的{name}获得了本次比赛的最佳球员。",
    "去年{name}从{address}搬到了{address}，现在在{company}做{position}。",
    "{government}发布通知，要求各单位加强冬季防火工作。",
    "你玩过{game}吗？我觉得比{game}好玩多了。",
    "这次调研由{organization}和{government}共同组织。",
    "{name}说，小时候最喜欢的书是{book}。",
    "{scene}的秋天特别美，很多摄影爱好者专程从{address}赶来。",
    "{movie}的票房已经突破五亿元，{company}是主要出品方。",
    "{position}{name}表示，{company}明年计划在{address}开设新工厂。",
    "今天下午，{organization}在{address}举办了公益演出。",
    "从{government}获悉，{address}地铁三号线将于年底通车。",
    "{name}和{name}一起去了{scene}，还拍了很多照片。",
    "{game}的电竞联赛今年由{company}主办。",
    "我觉得{movie}的结局有点仓促，不过演员们表现得不错。",
    "{book}一共三卷，讲述了一个家族在{address}的百年变迁。",
    "{organization}新任{position}{name}今天正式上任。",
    "天气预报说明天{address}有小雨，去{scene}的朋友记得带伞。",
    "{company}和{company}签署了战略合作协议。",
    "在{movie}里，{name}饰演一名{position}。",
    "{name}在{government}工作，平时很少玩{game}。",
    "{name}，{address}人，现任{organization}{position}。",
    "据了解，{company}去年营业收入增长了两成。",
    "{scene}景区将于下周一起暂停开放，具体恢复时间另行通知。",
    "{organization}正在讨论{book}的再版计划。",
    "今天的会议上没有人提到新的计划。",
    "大家都说这家店的面条很好吃，周末经常要排队。",
    "Lisa说{game}的画面比上一代精致多了，她在{address}的网吧连玩了三个小时。",
    "{company}CEO{name}在发布会上介绍了三款新产品。",
]

SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random) -> dict:
    """One CLUENER record: the template filled left to right, each slot's span recorded."""
    text, label, used, last = "", {}, set(), 0
    for match in SLOT.finditer(template):
        kind = match.group(1)
        entity = rng.choice([e for e in POOLS[kind] if e not in used])
        used.add(entity)
        text += template[last : match.start()]
        label.setdefault(kind, {}).setdefault(entity, []).append([len(text), len(text) + len(entity) - 1])
        text += entity
        last = match.end()
    text += template[last:]
    # Every occurrence of an entity string is a labelled mention, so spans are recoverable exactly.
    for entities in label.values():
        for entity, spans in entities.items():
            assert text.count(entity) == len(spans), (text, entity)
    return {"text": text, "label": label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(__file__).resolve().parent.parent / "llm_ner" / "sample_data" / "cluener"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", args.train), ("dev", args.dev)):
        records = [fill(rng.choice(TEMPLATES), rng) for _ in range(size)]
        with open(args.out / f"{split}.json", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"wrote {size} sentences to {args.out / f'{split}.json'}")


if __name__ == "__main__":
    main()
