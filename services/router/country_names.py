"""What a country is called in analysts' prose, by ISO 3166 code: English, then Arabic. Pure data.

Redaction masks these where `affected_countries` is redacted. The table holds the region's countries and
its neighbours (the codes the registry uses); a code missing here is still masked as a whole word. Names
are what the text would say: the common English name and its usual variants, the Arabic name with and
without the article (so `عراقي`, Iraqi, is caught by `عراق`).
"""

from __future__ import annotations

COUNTRY_NAMES: dict[str, tuple[str, ...]] = {
    "AE": ("United Arab Emirates", "UAE", "Emirates", "Emirati", "الإمارات", "إمارات"),
    "AF": ("Afghanistan", "Afghan", "أفغانستان", "أفغان"),
    "BH": ("Bahrain", "البحرين", "بحرين"),
    "DJ": ("Djibouti", "جيبوتي"),
    "DZ": ("Algeria", "Algerian", "الجزائر", "جزائر"),
    "EG": ("Egypt", "Egyptian", "مصر"),
    "IL": ("Israel", "إسرائيل"),
    "IQ": ("Iraq", "العراق", "عراق"),
    "IR": ("Iran", "إيران", "ايران"),
    "JO": ("Jordan", "الأردن", "أردن"),
    "KM": ("Comoros", "جزر القمر"),
    "KW": ("Kuwait", "الكويت", "كويت"),
    "LB": ("Lebanon", "Lebanese", "لبنان"),
    "LY": ("Libya", "ليبيا"),
    "MA": ("Morocco", "Moroccan", "المغرب", "مغرب"),
    "MR": ("Mauritania", "موريتانيا"),
    "OM": ("Oman", "عمان"),
    "PK": ("Pakistan", "باكستان"),
    "PS": ("Palestine", "Palestinian", "فلسطين"),
    "QA": ("Qatar", "قطر"),
    "SA": ("Saudi Arabia", "Saudi", "KSA", "السعودية", "سعودي"),
    "SD": ("Sudan", "السودان", "سودان"),
    "SO": ("Somalia", "Somali", "الصومال", "صومال"),
    "SY": ("Syria", "سوريا", "سورية"),
    "TN": ("Tunisia", "Tunisian", "تونس"),
    "TR": ("Turkey", "Türkiye", "Turkish", "تركيا"),
    "YE": ("Yemen", "اليمن", "يمن"),
}
