import json, random
random.seed(1)
pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "!\"#$%()*+,-./:;<=>?@[\\]^_`{|}~'",
         "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœÀÉÖÜ", "ПриветмирЖЩЭЮЯабв", "αβγδεζηθΑΒΓΣσς", "東京都大阪日本語漢字猫犬", "ひらがなカタカナ",
         "한국어서울", "🐱🎉👍🏽❤️🔥😀", "     ", "\t\n", "'s 't 're 'll", "مرحبا", "नमस्ते", "ไทย"]
prompts = []
for i in range(400):
    n = random.randint(1, 60)
    s = "".join(random.choice(random.choice(pools)) for _ in range(n))
    prompts.append(s)
words = ["cat","dog","photo","painting","highly","detailed","4k","8k","trending","artstation","masterpiece","portrait","of","a","the","in","style","by","Greg","Rutkowski","don't","it's","we're","(best","quality:1.2)","[blue]","sky,","--ar","16:9"]
for i in range(200):
    prompts.append(" ".join(random.choice(words) for _ in range(random.randint(1, 90))))
json.dump(prompts, open("prompts.json","w"), ensure_ascii=False)
print(len(prompts))
