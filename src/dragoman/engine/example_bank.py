"""A bank of parallel sentences in every embedded language, to pick per-sentence examples from.

The fixed six examples of a language pair (`examples.py`) are shared by every request and
evaluated once; on top of them each sentence gets the two bank entries closest to it (character
trigram overlap), as adaptive translation systems pick the most similar pairs. Short phrases
gain most: a small base model tends to copy the structure of the nearest example, so the
nearest example should resemble the sentence.

None of these sentences is in `bench/quality/pairs.tsv`, which measures the result.
"""

from __future__ import annotations

BANK: tuple[dict[str, str], ...] = (
    {"en": "Thank you very much.", "ko": "정말 감사합니다.", "ja": "どうもありがとうございます。",
     "zh": "非常感谢。", "fr": "Merci beaucoup.", "es": "Muchas gracias.", "de": "Vielen Dank."},
    {"en": "I am sorry.", "ko": "죄송합니다.", "ja": "ごめんなさい。", "zh": "对不起。",
     "fr": "Je suis désolé.", "es": "Lo siento.", "de": "Es tut mir leid."},
    {"en": "See you next week.", "ko": "다음 주에 봐요.", "ja": "また来週会いましょう。",
     "zh": "下周见。", "fr": "À la semaine prochaine.", "es": "Nos vemos la próxima semana.",
     "de": "Bis nächste Woche."},
    {"en": "Goodbye.", "ko": "안녕히 가세요.", "ja": "さようなら。", "zh": "再见。",
     "fr": "Au revoir.", "es": "Adiós.", "de": "Auf Wiedersehen."},
    {"en": "Sleep well.", "ko": "잘 자요.", "ja": "ぐっすり休んでください。", "zh": "睡个好觉。",
     "fr": "Dors bien.", "es": "Que duermas bien.", "de": "Schlaf gut."},
    {"en": "How are you?", "ko": "어떻게 지내세요?", "ja": "お元気ですか？", "zh": "你好吗？",
     "fr": "Comment allez-vous ?", "es": "¿Cómo estás?", "de": "Wie geht es Ihnen?"},
    {"en": "Yes, of course.", "ko": "네, 물론이죠.", "ja": "はい、もちろんです。",
     "zh": "是的，当然。",
     "fr": "Oui, bien sûr.", "es": "Sí, claro.", "de": "Ja, natürlich."},
    {"en": "I don't understand.", "ko": "이해가 안 돼요.", "ja": "わかりません。",
     "zh": "我不明白。",
     "fr": "Je ne comprends pas.", "es": "No entiendo.", "de": "Ich verstehe nicht."},
    {"en": "I am tired.", "ko": "저는 피곤해요.", "ja": "私は疲れています。", "zh": "我累了。",
     "fr": "Je suis fatigué.", "es": "Estoy cansado.", "de": "Ich bin müde."},
    {"en": "I like hot chocolate.", "ko": "저는 핫초코를 좋아해요.",
     "ja": "私はホットチョコレートが好きです。", "zh": "我喜欢热巧克力。",
     "fr": "J'aime le chocolat chaud.", "es": "Me gusta el chocolate caliente.",
     "de": "Ich mag heiße Schokolade."},
    {"en": "How much does it cost?", "ko": "얼마예요?", "ja": "いくらですか？", "zh": "多少钱？",
     "fr": "Combien ça coûte ?", "es": "¿Cuánto cuesta?", "de": "Wie viel kostet das?"},
    {"en": "Where is the exit?", "ko": "출구가 어디예요?", "ja": "出口はどこですか？",
     "zh": "出口在哪里？", "fr": "Où est la sortie ?", "es": "¿Dónde está la salida?",
     "de": "Wo ist der Ausgang?"},
    {"en": "The bus arrives at 7:15.", "ko": "버스는 7시 15분에 도착합니다.",
     "ja": "バスは7時15分に着きます。", "zh": "公交车七点十五分到。",
     "fr": "Le bus arrive à 7 h 15.", "es": "El autobús llega a las 7:15.",
     "de": "Der Bus kommt um 7:15 Uhr an."},
    {"en": "The library opens at 8 a.m. on weekdays.",
     "ko": "도서관은 평일 오전 8시에 문을 엽니다.", "ja": "図書館は平日の午前8時に開きます。",
     "zh": "图书馆工作日早上八点开门。", "fr": "La bibliothèque ouvre à 8 heures en semaine.",
     "es": "La biblioteca abre a las 8 de la mañana entre semana.",
     "de": "Die Bibliothek öffnet werktags um 8 Uhr."},
    {"en": "It is very hot today.", "ko": "오늘은 아주 더워요.", "ja": "今日はとても暑いです。",
     "zh": "今天很热。", "fr": "Il fait très chaud aujourd'hui.", "es": "Hoy hace mucho calor.",
     "de": "Heute ist es sehr heiß."},
    {"en": "Berlin is the capital of Germany.", "ko": "베를린은 독일의 수도입니다.",
     "ja": "ベルリンはドイツの首都です。", "zh": "柏林是德国的首都。",
     "fr": "Berlin est la capitale de l'Allemagne.", "es": "Berlín es la capital de Alemania.",
     "de": "Berlin ist die Hauptstadt Deutschlands."},
    {"en": "My father works at a bank.", "ko": "제 아버지는 은행에서 일합니다.",
     "ja": "父は銀行で働いています。", "zh": "我父亲在银行工作。",
     "fr": "Mon père travaille dans une banque.", "es": "Mi padre trabaja en un banco.",
     "de": "Mein Vater arbeitet bei einer Bank."},
    {"en": "Please close the door.", "ko": "문을 닫아 주세요.", "ja": "ドアを閉めてください。",
     "zh": "请关门。", "fr": "Fermez la porte, s'il vous plaît.",
     "es": "Por favor, cierra la puerta.", "de": "Bitte schließen Sie die Tür."},
    {"en": "Can you repeat that, please?", "ko": "다시 한번 말씀해 주시겠어요?",
     "ja": "もう一度言っていただけますか？", "zh": "请您再说一遍好吗？",
     "fr": "Pouvez-vous répéter, s'il vous plaît ?", "es": "¿Puede repetirlo, por favor?",
     "de": "Können Sie das bitte wiederholen?"},
    {"en": "We will meet at the station tomorrow.", "ko": "우리는 내일 역에서 만날 거예요.",
     "ja": "私たちは明日駅で会います。", "zh": "我们明天在车站见面。",
     "fr": "Nous nous retrouverons à la gare demain.", "es": "Mañana nos vemos en la estación.",
     "de": "Wir treffen uns morgen am Bahnhof."},
    {"en": "Kenji and Yuna live in Osaka.", "ko": "켄지와 유나는 오사카에 살아요.",
     "ja": "健二と由奈は大阪に住んでいます。", "zh": "健二和由奈住在大阪。",
     "fr": "Kenji et Yuna habitent à Osaka.", "es": "Kenji y Yuna viven en Osaka.",
     "de": "Kenji und Yuna wohnen in Osaka."},
    {"en": "The concert was cancelled because of the rain.",
     "ko": "비 때문에 콘서트가 취소되었습니다.", "ja": "雨のためコンサートは中止になりました。",
     "zh": "音乐会因为下雨取消了。", "fr": "Le concert a été annulé à cause de la pluie.",
     "es": "El concierto se canceló por la lluvia.",
     "de": "Das Konzert wurde wegen des Regens abgesagt."},
    {"en": "I bought three apples and a bottle of milk.",
     "ko": "저는 사과 세 개와 우유 한 병을 샀어요.", "ja": "りんごを三つと牛乳を一本買いました。",
     "zh": "我买了三个苹果和一瓶牛奶。", "fr": "J'ai acheté trois pommes et une bouteille de lait.",
     "es": "Compré tres manzanas y una botella de leche.",
     "de": "Ich habe drei Äpfel und eine Flasche Milch gekauft."},
    {"en": "In this lecture we will look at neural networks.",
     "ko": "이번 강의에서는 신경망을 살펴보겠습니다.",
     "ja": "この講義ではニューラルネットワークを見ていきます。",
     "zh": "在这次讲座中我们将研究神经网络。",
     "fr": "Dans ce cours, nous allons étudier les réseaux de neurones.",
     "es": "En esta clase veremos las redes neuronales.",
     "de": "In dieser Vorlesung betrachten wir neuronale Netze."},
)  # fmt: skip


def _trigrams(text: str) -> dict[str, int]:
    padded = f"  {text.lower()} "
    counts: dict[str, int] = {}
    for i in range(len(padded) - 2):
        gram = padded[i : i + 3]
        counts[gram] = counts.get(gram, 0) + 1
    return counts


def _similarity(a: dict[str, int], b: dict[str, int]) -> float:
    shared = sum(min(n, b[g]) for g, n in a.items() if g in b)
    return 2 * shared / (sum(a.values()) + sum(b.values()) or 1)


_INDEX: dict[str, list[dict[str, int]]] = {}


def nearest(source: str, target: str, sentence: str, k: int = 2) -> list[tuple[str, str]]:
    """The `k` bank pairs whose source side is most like `sentence`, the most alike last (a
    base model leans on the example nearest the sentence)."""
    if source not in _INDEX:
        _INDEX[source] = [_trigrams(entry[source]) for entry in BANK]
    query = _trigrams(sentence)
    scored = sorted(
        ((_similarity(query, grams), i) for i, grams in enumerate(_INDEX[source])),
        reverse=True,
    )[:k]
    return [(BANK[i][source], BANK[i][target]) for score, i in reversed(scored) if score > 0]
