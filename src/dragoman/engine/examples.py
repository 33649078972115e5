"""Parallel example sentences for the embedded base model's few-shot prompts.

Every sentence exists in every language, so any pair of these languages gets the same six
examples in its own direction. The prefix made from them is identical for every request of a
pair, which lets llama.cpp reuse its evaluated state: the first token comes in about 20 ms
instead of 130 ms.
"""

from __future__ import annotations

LOCAL_LANGUAGES: tuple[str, ...] = ("en", "ko", "ja", "zh", "fr", "es", "de")

EXAMPLES: dict[str, tuple[str, ...]] = {
    "en": (
        "Good morning, everyone.",
        "The weather is nice today.",
        "Where is the train station?",
        "Today's lecture is about machine learning.",
        "I will send you the report by 3 p.m. tomorrow.",
        "Anna and Tom visited Seoul in 2023.",
    ),
    "ko": (
        "여러분, 좋은 아침입니다.",
        "오늘은 날씨가 좋네요.",
        "기차역이 어디에 있나요?",
        "오늘 강의는 머신러닝에 관한 것입니다.",
        "내일 오후 3시까지 보고서를 보내 드리겠습니다.",
        "안나와 톰은 2023년에 서울을 방문했습니다.",
    ),
    "ja": (
        "皆さん、おはようございます。",
        "今日はいい天気ですね。",
        "駅はどこですか？",
        "今日の講義は機械学習についてです。",
        "明日の午後3時までに報告書をお送りします。",
        "アンナとトムは2023年にソウルを訪れました。",
    ),
    "zh": (
        "大家早上好。",
        "今天天气很好。",
        "火车站在哪里？",
        "今天的讲座是关于机器学习的。",
        "我明天下午三点前把报告发给你。",
        "安娜和汤姆在2023年访问了首尔。",
    ),
    "fr": (
        "Bonjour à tous.",
        "Il fait beau aujourd'hui.",
        "Où est la gare ?",
        "Le cours d'aujourd'hui porte sur l'apprentissage automatique.",
        "Je vous enverrai le rapport demain avant 15 heures.",
        "Anna et Tom ont visité Séoul en 2023.",
    ),
    "es": (
        "Buenos días a todos.",
        "Hoy hace buen tiempo.",
        "¿Dónde está la estación de tren?",
        "La clase de hoy trata sobre el aprendizaje automático.",
        "Le enviaré el informe mañana antes de las 3 de la tarde.",
        "Anna y Tom visitaron Seúl en 2023.",
    ),
    "de": (
        "Guten Morgen, alle zusammen.",
        "Das Wetter ist heute schön.",
        "Wo ist der Bahnhof?",
        "Die heutige Vorlesung handelt vom maschinellen Lernen.",
        "Ich schicke Ihnen den Bericht morgen bis 15 Uhr.",
        "Anna und Tom haben 2023 Seoul besucht.",
    ),
}

# How each language is labelled in the prompt: in English, which the base model knows best.
LABELS = {
    "en": "English",
    "ko": "Korean",
    "ja": "Japanese",
    "zh": "Chinese",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
}


def few_shot_prefix(source: str, target: str) -> str:
    src, tgt = LABELS[source], LABELS[target]
    blocks = [
        f"{src}: {s}\n{tgt}: {t}\n" for s, t in zip(EXAMPLES[source], EXAMPLES[target], strict=True)
    ]
    return "\n".join(blocks) + "\n"


def few_shot_prompt(source: str, target: str, sentence: str) -> str:
    return f"{few_shot_prefix(source, target)}{LABELS[source]}: {sentence}\n{LABELS[target]}:"
